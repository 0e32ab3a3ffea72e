// Reference dumper for the GGUF fixtures: runs a GGUF through llama.cpp's public C API (llama.h)
// and writes logits / greedy tokens for scripts/make_gguf_fixtures.py. Not part of the product.
//
//   llama_reference MODEL.gguf N_CTX N_THREADS < jobs
//
// Settings (fixed so the references are reproducible): CPU only, no weight repacking
// (use_extra_bufts = false, so the plain ggml vec_dot kernels run), flash attention disabled,
// F32 K and V cache, n_batch = n_ubatch = N_CTX (a prompt is always one batch and one ubatch),
// one sequence, N_THREADS threads for both single-token and batch decoding.
//
// Protocol: one job per stdin line, whitespace separated; every job starts from an empty
// KV cache and puts its tokens at positions 0..n-1. Replies are single stdout lines.
//
//   info                          -> "info <key> <value...>" lines, then "end"
//   logits all|last OUT N id...   -> decodes the N ids as one batch; writes the logits of every
//                                    position (all) or of the last one (last) to OUT as raw
//                                    little-endian f32 [n_out, n_vocab]; replies "ok <n_out>"
//   greedy K N id...              -> decodes the prompt as one batch, then K times: argmax of the
//                                    last logits (lowest id on ties; EOS does not stop) and, except
//                                    after the last pick, decodes that token alone at the next
//                                    position; replies "tokens t1..tK" and "margin m" (the smallest
//                                    top1 - top2 logit gap over the K picks)
//
// Errors go to stderr with exit status 1. llama.cpp's own log lines at WARN or above go to
// stderr; LLAMA_REFERENCE_VERBOSE=1 forwards all of them.

#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool g_verbose = false;
ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

void log_callback(ggml_log_level level, const char * text, void *) {
    if (level != GGML_LOG_LEVEL_CONT) {
        g_last_level = level;
    }
    if (g_verbose || g_last_level >= GGML_LOG_LEVEL_WARN) {
        std::fputs(text, stderr);
    }
}

[[noreturn]] void die(const std::string & msg) {
    std::fprintf(stderr, "llama_reference: %s\n", msg.c_str());
    std::exit(1);
}

struct Runner {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    int32_t n_vocab = 0;
    int32_t n_ctx = 0;

    // Clears the cache and decodes ids at positions 0..n-1 as one batch; `all` asks for the
    // logits of every position, otherwise only the last.
    void prefill(const std::vector<llama_token> & ids, bool all) {
        if (ids.empty() || (int32_t) ids.size() > n_ctx) {
            die("sequence length " + std::to_string(ids.size()) + " not in 1.." + std::to_string(n_ctx));
        }
        llama_memory_clear(llama_get_memory(ctx), true);
        llama_batch batch = llama_batch_init((int32_t) ids.size(), 0, 1);
        for (size_t i = 0; i < ids.size(); i++) {
            batch.token[i] = ids[i];
            batch.pos[i] = (llama_pos) i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = all || i + 1 == ids.size();
        }
        batch.n_tokens = (int32_t) ids.size();
        const int32_t rc = llama_decode(ctx, batch);
        llama_batch_free(batch);
        if (rc != 0) {
            die("llama_decode failed: " + std::to_string(rc));
        }
    }

    void decode_one(llama_token token, llama_pos pos) {
        llama_batch batch = llama_batch_init(1, 0, 1);
        batch.token[0] = token;
        batch.pos[0] = pos;
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0] = 1;
        batch.n_tokens = 1;
        const int32_t rc = llama_decode(ctx, batch);
        llama_batch_free(batch);
        if (rc != 0) {
            die("llama_decode failed: " + std::to_string(rc));
        }
    }

    const float * logits_at(int32_t i) {
        const float * row = llama_get_logits_ith(ctx, i);
        if (row == nullptr) {
            die("no logits for batch index " + std::to_string(i));
        }
        return row;
    }
};

std::vector<llama_token> read_ids(std::istringstream & in) {
    size_t n = 0;
    if (!(in >> n)) {
        die("missing token count");
    }
    std::vector<llama_token> ids(n);
    for (auto & id : ids) {
        if (!(in >> id)) {
            die("missing token id");
        }
    }
    return ids;
}

void job_info(const Runner & r) {
    char buf[512];
    llama_model_desc(r.model, buf, sizeof(buf));
    std::printf("info version %s\n", llama_version());
    std::printf("info desc %s\n", buf);
    std::printf("info ftype %s\n", llama_ftype_name(llama_model_ftype(r.model)));
    std::printf("info n_vocab %d\n", r.n_vocab);
    std::printf("info n_ctx %u\n", llama_n_ctx(r.ctx));
    std::printf("info n_ctx_train %d\n", llama_model_n_ctx_train(r.model));
    std::printf("info n_params %llu\n", (unsigned long long) llama_model_n_params(r.model));
    std::printf("info system %s\n", llama_print_system_info());
    std::printf("end\n");
}

void job_logits(Runner & r, std::istringstream & in) {
    std::string mode, out_path;
    in >> mode >> out_path;
    if (mode != "all" && mode != "last") {
        die("logits mode must be all or last");
    }
    const auto ids = read_ids(in);
    const bool all = mode == "all";
    r.prefill(ids, all);
    FILE * f = std::fopen(out_path.c_str(), "wb");
    if (f == nullptr) {
        die("cannot write " + out_path);
    }
    const int32_t first = all ? 0 : (int32_t) ids.size() - 1;
    for (int32_t i = first; i < (int32_t) ids.size(); i++) {
        std::fwrite(r.logits_at(i), sizeof(float), (size_t) r.n_vocab, f);
    }
    std::fclose(f);
    std::printf("ok %d\n", (int32_t) ids.size() - first);
}

void job_greedy(Runner & r, std::istringstream & in) {
    int32_t k = 0;
    in >> k;
    const auto ids = read_ids(in);
    r.prefill(ids, false);
    int32_t batch_index = (int32_t) ids.size() - 1;
    llama_pos pos = (llama_pos) ids.size();
    float min_margin = INFINITY;
    std::string tokens;
    for (int32_t step = 0; step < k; step++) {
        const float * row = r.logits_at(batch_index);
        int32_t best = 0;
        for (int32_t t = 1; t < r.n_vocab; t++) {
            if (row[t] > row[best]) {
                best = t;
            }
        }
        float second = -INFINITY;
        for (int32_t t = 0; t < r.n_vocab; t++) {
            if (t != best && row[t] > second) {
                second = row[t];
            }
        }
        min_margin = std::min(min_margin, row[best] - second);
        tokens += " " + std::to_string(best);
        if (step + 1 < k) {
            if (pos >= r.n_ctx) {
                die("greedy run past n_ctx");
            }
            r.decode_one(best, pos++);
            batch_index = 0;
        }
    }
    std::printf("tokens%s\n", tokens.c_str());
    std::printf("margin %.9g\n", min_margin);
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc != 4) {
        die("usage: llama_reference MODEL.gguf N_CTX N_THREADS < jobs");
    }
    const char * verbose = std::getenv("LLAMA_REFERENCE_VERBOSE");
    g_verbose = verbose != nullptr && std::strcmp(verbose, "1") == 0;
    llama_log_set(log_callback, nullptr);
    llama_backend_init();

    Runner r;
    r.n_ctx = std::atoi(argv[2]);
    const int32_t n_threads = std::atoi(argv[3]);

    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    mparams.use_extra_bufts = false;
    r.model = llama_model_load_from_file(argv[1], mparams);
    if (r.model == nullptr) {
        die(std::string("cannot load ") + argv[1]);
    }
    r.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(r.model));

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = (uint32_t) r.n_ctx;
    cparams.n_batch = (uint32_t) r.n_ctx;
    cparams.n_ubatch = (uint32_t) r.n_ctx;
    cparams.n_seq_max = 1;
    cparams.n_threads = n_threads;
    cparams.n_threads_batch = n_threads;
    cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cparams.type_k = GGML_TYPE_F32;
    cparams.type_v = GGML_TYPE_F32;
    cparams.offload_kqv = false;
    cparams.op_offload = false;
    cparams.swa_full = true;
    cparams.no_perf = true;
    r.ctx = llama_init_from_model(r.model, cparams);
    if (r.ctx == nullptr) {
        die("cannot create context");
    }
    if ((int32_t) llama_n_ctx(r.ctx) != r.n_ctx) {
        die("context has n_ctx " + std::to_string(llama_n_ctx(r.ctx)) + ", asked for " + std::to_string(r.n_ctx));
    }

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string job;
        if (!(in >> job)) {
            continue;
        }
        if (job == "info") {
            job_info(r);
        } else if (job == "logits") {
            job_logits(r, in);
        } else if (job == "greedy") {
            job_greedy(r, in);
        } else {
            die("unknown job " + job);
        }
        std::fflush(stdout);
    }

    llama_free(r.ctx);
    llama_model_free(r.model);
    llama_backend_free();
    return 0;
}
