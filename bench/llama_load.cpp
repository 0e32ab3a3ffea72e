// Load time of llama.cpp, which llama-bench does not report: how long libllama takes to load a
// GGUF with its defaults (memory-mapped) and make a context ready for a 512-token prompt, i.e.
// what a program pays between "open this model" and "evaluate". Backend initialisation comes
// before the clock starts, as loading the addon does for the Node runners.
//
//   llama_load MODEL.gguf THREADS N_CTX N_BATCH   -> {"loadMs":..,"modelMs":..,"contextMs":..}
//
// Compiled by bench/run.mjs against the libllama of scripts/llama_cpp.sh.
#include "llama.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

static double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

int main(int argc, char ** argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS N_CTX N_BATCH\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[2]);
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();

    const auto start = std::chrono::steady_clock::now();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (model == nullptr) {
        fprintf(stderr, "failed to load %s\n", argv[1]);
        return 1;
    }
    const double model_ms = ms_since(start);

    const auto context_start = std::chrono::steady_clock::now();
    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = (uint32_t) atoi(argv[3]);
    cparams.n_batch = (uint32_t) atoi(argv[4]);
    cparams.n_ubatch = cparams.n_batch;
    cparams.n_threads = threads;
    cparams.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cparams);
    if (ctx == nullptr) {
        fprintf(stderr, "failed to create a context for %s\n", argv[1]);
        return 1;
    }
    const double context_ms = ms_since(context_start);
    const double load_ms = ms_since(start);

    printf("{\"loadMs\":%.3f,\"modelMs\":%.3f,\"contextMs\":%.3f}\n", load_ms, model_ms, context_ms);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
