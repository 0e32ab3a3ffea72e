// llama.cpp's tokenizer on a GGUF's vocabulary, for scripts/make_gguf_tokenizer_fixtures.py.
//
//   gguf_tokenize MODEL.gguf < request.json > reply.json
//
// request: {"texts": [string...], "detokenize": [[id...]...]}
// reply:   {"vocab":      {"n_tokens", "bos", "eos", "add_bos", "add_eos", "eog": [id...]},
//           "tokenize":   [{"ff", "ft", "tf", "tt": [id...]}...]   // add_special x parse_special
//           "detokenize": [{"plain", "special", "strip_plain", "strip_special": string}...]}
//
// `llama_tokenize(vocab, text, len, ids, n, add_special, parse_special)`, and
// `llama_detokenize(vocab, ids, n, buf, len, remove_special, unparse_special)` with
// remove_special false ("plain"/"special") and true ("strip_*"); bytes that are not UTF-8 come
// back as U+FFFD. Built by the fixture script against the libllama of scripts/llama_cpp.sh.
#include "llama.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

using json = nlohmann::ordered_json;

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text, bool add_special,
                                         bool parse_special) {
    std::vector<llama_token> ids(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(),
                               add_special, parse_special);
    if (n < 0) {
        ids.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), add_special,
                           parse_special);
    }
    ids.resize(n);
    return ids;
}

static std::string detokenize(const llama_vocab * vocab, const std::vector<llama_token> & ids, bool remove_special,
                              bool unparse_special) {
    std::string out(ids.size() * 16 + 16, '\0');
    int32_t n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), out.data(), (int32_t) out.size(),
                                 remove_special, unparse_special);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), out.data(), (int32_t) out.size(),
                             remove_special, unparse_special);
    }
    out.resize(n);
    return out;
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < request.json\n", argv[0]);
        return 2;
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], params);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const json request = json::parse(std::string(std::istreambuf_iterator<char>(std::cin), {}));

    json reply;
    const int32_t n_tokens = llama_vocab_n_tokens(vocab);
    json eog = json::array();
    for (llama_token id = 0; id < n_tokens; ++id) {
        if (llama_vocab_is_eog(vocab, id)) {
            eog.push_back(id);
        }
    }
    reply["vocab"] = {
        {"n_tokens", n_tokens},
        {"bos", llama_vocab_bos(vocab)},
        {"eos", llama_vocab_eos(vocab)},
        {"add_bos", llama_vocab_get_add_bos(vocab)},
        {"add_eos", llama_vocab_get_add_eos(vocab)},
        {"eog", eog},
    };

    json tokenized = json::array();
    for (const auto & t : request.at("texts")) {
        const std::string text = t.get<std::string>();
        tokenized.push_back({
            {"ff", tokenize(vocab, text, false, false)},
            {"ft", tokenize(vocab, text, false, true)},
            {"tf", tokenize(vocab, text, true, false)},
            {"tt", tokenize(vocab, text, true, true)},
        });
    }
    reply["tokenize"] = tokenized;

    json detokenized = json::array();
    for (const auto & seq : request.at("detokenize")) {
        const std::vector<llama_token> ids = seq.get<std::vector<llama_token>>();
        detokenized.push_back({
            {"plain", detokenize(vocab, ids, false, false)},
            {"special", detokenize(vocab, ids, false, true)},
            {"strip_plain", detokenize(vocab, ids, true, false)},
            {"strip_special", detokenize(vocab, ids, true, true)},
        });
    }
    reply["detokenize"] = detokenized;

    std::cout << reply.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    llama_model_free(model);
    return 0;
}
