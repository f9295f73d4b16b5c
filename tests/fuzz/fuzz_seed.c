/* Writes small valid inputs for one fuzz target into a directory (its seed corpus):
 *   fuzz_seed TARGET DIR     TARGET = gguf, tok_spm, tok_json, tok_llama2c, tok_blob, chat, safetensors,
 *                            import_llama2c, import_gguf, import_hf
 * The files are built here byte by byte (as the formats' specs describe them), so the seeds need no
 * external data; scripts/fuzz.sh adds real files from ../shared/data when they are present. */
#include "core/error.h"
#include "core/gguf.h"
#include "data/tokenizer.h"
#include "model/params.h"
#include "tests/unit/byte_writer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *out_dir;
static int n_written;

static void save(const char *name, const buf *b) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    n_written++;
}

static void save_free(const char *name, buf *b) {
    save(name, b);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- a small vocabulary shared by the tokenizer seeds ------------------------------------------------ */

static const char *const spm_vocab[] = {"<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "<0xC3>", "\xE2\x96\x81", "a", "b", "c",
                                        "ab", "\xE2\x96\x81" "a", "\xE2\x96\x81" "ab", "\xE2\x96\x81" "c", "1", "2"};
#define N_SPM (int)(sizeof spm_vocab / sizeof spm_vocab[0])
static int spm_type(int i) { return i == 0 ? 2 : i < 3 ? 3 : i < 6 ? 6 : 1; }

/* ---- GGUF ---------------------------------------------------------------------------------------------- */

static void kv_str(buf *b, const char *k, const char *v) { gstr(b, k), u32(b, TN_GGUF_STRING), gstr(b, v); }
static void kv_u32(buf *b, const char *k, uint32_t v) { gstr(b, k), u32(b, TN_GGUF_UINT32), u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { gstr(b, k), u32(b, TN_GGUF_FLOAT32), f32(b, v); }
static void kv_bool(buf *b, const char *k, int v) { gstr(b, k), u32(b, TN_GGUF_BOOL), u8(b, (uint8_t)v); }
static void pad(buf *b, size_t a) {
    while (b->n % a) u8(b, 0);
}

/* Vocab-only files as llama.cpp's ggml-vocab-*.gguf: spm ("llama") and byte-level ("gpt2"). */
static void gguf_vocab(int gpt2) {
    buf b = {0};
    static const char *const bpe_vocab[] = {"a", "b", "c", "\xC4\xA0", "\xC4\xA0" "a", "ab", "\xC4\xA0" "ab", "1", "2",
                                            "<|endoftext|>"};
    int n = gpt2 ? 10 : N_SPM, n_kv = gpt2 ? 6 : 8;
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, 0), u64(&b, (uint64_t)n_kv);
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "tokenizer.ggml.model", gpt2 ? "gpt2" : "llama");
    gstr(&b, "tokenizer.ggml.tokens"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, (uint64_t)n);
    for (int i = 0; i < n; i++) gstr(&b, gpt2 ? bpe_vocab[i] : spm_vocab[i]);
    if (gpt2) {
        kv_str(&b, "tokenizer.ggml.pre", "smollm");
        gstr(&b, "tokenizer.ggml.merges"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, 3);
        gstr(&b, "\xC4\xA0 a"), gstr(&b, "a b"), gstr(&b, "\xC4\xA0" "a b");
        kv_u32(&b, "tokenizer.ggml.eos_token_id", 9);
    } else {
        gstr(&b, "tokenizer.ggml.scores"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_FLOAT32), u64(&b, (uint64_t)n);
        for (int i = 0; i < n; i++) f32(&b, -(float)i);
        gstr(&b, "tokenizer.ggml.token_type"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_INT32), u64(&b, (uint64_t)n);
        for (int i = 0; i < n; i++) u32(&b, (uint32_t)spm_type(i));
        kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
        kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
        kv_bool(&b, "tokenizer.ggml.add_space_prefix", 1);
    }
    save_free(gpt2 ? "vocab-gpt2.gguf" : "vocab-llama.gguf", &b);
}

/* Every metadata value type, nested arrays and tensors of several ggml types. */
static void gguf_mixed(void) {
    buf b = {0};
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, 4), u64(&b, 7);
    kv_u32(&b, "general.alignment", 64);
    kv_str(&b, "general.name", "seed");
    gstr(&b, "x.i8"), u32(&b, TN_GGUF_INT8), u8(&b, 0xFF);
    gstr(&b, "x.u64"), u32(&b, TN_GGUF_UINT64), u64(&b, 1ull << 40);
    gstr(&b, "x.f64"), u32(&b, TN_GGUF_FLOAT64), u64(&b, 0x3FF0000000000000ull);
    gstr(&b, "x.nested"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_ARRAY), u64(&b, 2);
    u32(&b, TN_GGUF_INT16), u64(&b, 2), u16(&b, 1), u16(&b, 0xFFFF);
    u32(&b, TN_GGUF_STRING), u64(&b, 1), gstr(&b, "s");
    gstr(&b, "x.bools"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_BOOL), u64(&b, 3), u8(&b, 1), u8(&b, 0), u8(&b, 1);
    /* tensors: F32 [8], F16 [4, 2], Q8_0 [32], Q4_K [256] */
    gstr(&b, "t.f32"), u32(&b, 1), u64(&b, 8), u32(&b, TN_GGML_F32), u64(&b, 0);
    gstr(&b, "t.f16"), u32(&b, 2), u64(&b, 4), u64(&b, 2), u32(&b, TN_GGML_F16), u64(&b, 64);
    gstr(&b, "t.q8"), u32(&b, 1), u64(&b, 32), u32(&b, TN_GGML_Q8_0), u64(&b, 128);
    gstr(&b, "t.q4k"), u32(&b, 1), u64(&b, 256), u32(&b, TN_GGML_Q4_K), u64(&b, 192);
    pad(&b, 64);
    size_t base = b.n;
    for (int i = 0; i < 8; i++) f32(&b, (float)i);
    while (b.n < base + 64) u8(&b, 0);
    for (int i = 0; i < 8; i++) u16(&b, 0x3C00);
    while (b.n < base + 128) u8(&b, 0);
    u16(&b, 0x2400);
    for (int i = 0; i < 32; i++) u8(&b, (uint8_t)i);
    while (b.n < base + 192) u8(&b, 0);
    for (int i = 0; i < 144; i++) u8(&b, (uint8_t)(i * 7));
    save_free("mixed.gguf", &b);
}

/* A complete tiny model (as test_import.c writes one): what import_gguf accepts. arch "llama", "qwen2" (q/k/v
 * biases) or "qwen3" (per-head q/k norms, key_length 32 = head_dim with 2 heads of dim 32); rope_freqs adds a
 * Llama 3.1-style rope_freqs.weight. */
static void gguf_model_arch(int tied, const char *arch, int rope_freqs, const char *name) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 32, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.ffn_dim = 32, c.vocab_size = N_SPM;
    c.max_seq_len = 16, c.tied_embeddings = tied;
    c.qkv_bias = !strcmp(arch, "qwen2");
    if (!strcmp(arch, "qwen3")) c.qk_norm = 1, c.head_dim = 32;
    tn_llama_layout l;
    if (tn_llama_layout_init(&l, &c) != 0) {
        fprintf(stderr, "fuzz_seed: %s\n", tn_errmsg());
        exit(1);
    }
    static const char *kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    buf infos = {0}, data = {0}, b = {0};
    for (int i = 0; i < l.n_tensors; i++) {
        const tn_tensor_info *t = &l.tensors[i];
        char nm[96];
        if (t->layer < 0)
            snprintf(nm, sizeof nm, "%s", t->group == TN_GROUP_EMBED ? "token_embd.weight" : t->group == TN_GROUP_HEAD ? "output.weight" : "output_norm.weight");
        else if (t->kind >= 0)
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", t->layer, kinds[t->kind]);
        else if (tn_bias_target(t) >= 0)
            snprintf(nm, sizeof nm, "blk.%d.%s.bias", t->layer, kinds[tn_bias_target(t)]);
        else if (strstr(t->name, "_norm.weight") && strstr(t->name, "self_attn."))
            snprintf(nm, sizeof nm, "blk.%d.attn_%c_norm.weight", t->layer, strstr(t->name, ".q_norm.") ? 'q' : 'k');
        else
            snprintf(nm, sizeof nm, "blk.%d.%s", t->layer, strstr(t->name, "input_layernorm") ? "attn_norm.weight" : "ffn_norm.weight");
        pad(&data, 32);
        uint64_t off = data.n;
        /* types cycle through the decoders the importer has: F32, F16, Q8_0, Q4_0, BF16 */
        uint32_t type = t->rank == 1 ? TN_GGML_F32 : (uint32_t[]){TN_GGML_F16, TN_GGML_Q8_0, TN_GGML_Q4_0, TN_GGML_BF16, TN_GGML_F32}[i % 5];
        for (size_t k = 0; k < t->numel; k += type == TN_GGML_Q8_0 || type == TN_GGML_Q4_0 ? 32 : 1) {
            switch (type) {
            case TN_GGML_F32: f32(&data, (float)((k * 37) % 11) / 16.0f - 0.3f); break;
            case TN_GGML_F16: u16(&data, (uint16_t)(0x3000 + (k * 13) % 0x400)); break;
            case TN_GGML_BF16: u16(&data, (uint16_t)(0x3E00 + (k * 5) % 0x80)); break;
            case TN_GGML_Q8_0:
                u16(&data, 0x2400);
                for (int j = 0; j < 32; j++) u8(&data, (uint8_t)(j * 9));
                break;
            case TN_GGML_Q4_0:
                u16(&data, 0x2C00);
                for (int j = 0; j < 16; j++) u8(&data, (uint8_t)(j * 17));
                break;
            }
        }
        gstr(&infos, nm);
        if (t->rank == 1) u32(&infos, 1), u64(&infos, (uint64_t)t->shape[0]);
        else u32(&infos, 2), u64(&infos, (uint64_t)t->shape[1]), u64(&infos, (uint64_t)t->shape[0]);
        u32(&infos, type), u64(&infos, off);
    }
    int n_t = l.n_tensors;
    if (rope_freqs) { /* llama.cpp's divisors for factor 8, low 1, high 4, original 8 at theta 1e4, hd 16 */
        pad(&data, 32);
        gstr(&infos, "rope_freqs.weight"), u32(&infos, 1), u64(&infos, 8), u32(&infos, TN_GGML_F32), u64(&infos, data.n);
        for (int i = 0; i < 8; i++) {
            double wl = 2 * 3.14159265358979 * pow(10000.0, 2.0 * i / 16), f = wl < 2 ? 1 : wl > 8 ? 8 : 1 / ((1 - (8 / wl - 1) / 3) / 8 + (8 / wl - 1) / 3);
            f32(&data, (float)f);
        }
        n_t++;
    }
    char k[96];
#define AK(suffix) (snprintf(k, sizeof k, "%s.%s", arch, suffix), k)
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, (uint64_t)n_t), u64(&b, 12 + (c.head_dim > 0));
    kv_str(&b, "general.architecture", arch);
    kv_u32(&b, AK("embedding_length"), (uint32_t)c.dim);
    kv_u32(&b, AK("block_count"), (uint32_t)c.n_layers);
    kv_u32(&b, AK("attention.head_count"), (uint32_t)c.n_heads);
    kv_u32(&b, AK("attention.head_count_kv"), (uint32_t)c.n_kv_heads);
    kv_u32(&b, AK("feed_forward_length"), (uint32_t)c.ffn_dim);
    kv_u32(&b, AK("context_length"), (uint32_t)c.max_seq_len);
    kv_f32(&b, AK("rope.freq_base"), 10000.0f);
    kv_f32(&b, AK("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (c.head_dim > 0) kv_u32(&b, AK("attention.key_length"), (uint32_t)c.head_dim);
#undef AK
    kv_str(&b, "tokenizer.ggml.model", "llama");
    gstr(&b, "tokenizer.ggml.tokens"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, (uint64_t)N_SPM);
    for (int i = 0; i < N_SPM; i++) gstr(&b, spm_vocab[i]);
    gstr(&b, "tokenizer.ggml.token_type"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_INT32), u64(&b, (uint64_t)N_SPM);
    for (int i = 0; i < N_SPM; i++) u32(&b, (uint32_t)spm_type(i));
    put(&b, infos.p, infos.n);
    pad(&b, 32);
    put(&b, data.p, data.n);
    save_free(name, &b);
    free(infos.p), free(data.p);
    tn_llama_layout_free(&l);
}

/* ---- SentencePiece tokenizer.model (protobuf) ---------------------------------------------------------- */

static void pb_varint(buf *b, uint64_t v) {
    while (v >= 0x80) u8(b, (uint8_t)(v | 0x80)), v >>= 7;
    u8(b, (uint8_t)v);
}
static void pb_key(buf *b, uint32_t num, int wt) { pb_varint(b, (uint64_t)num << 3 | (uint64_t)wt); }
static void pb_bytes(buf *b, uint32_t num, const void *d, size_t n) { pb_key(b, num, 2), pb_varint(b, n), put(b, d, n); }
static void pb_int(buf *b, uint32_t num, int64_t v) { pb_key(b, num, 0), pb_varint(b, (uint64_t)v); }

static void spm_model(int byte_fallback, int dummy, const char *name) {
    buf b = {0};
    for (int i = 0; i < N_SPM; i++) {
        buf p = {0};
        pb_bytes(&p, 1, spm_vocab[i], strlen(spm_vocab[i]));
        pb_key(&p, 2, 5), f32(&p, -(float)i * 0.5f);
        if (spm_type(i) != 1) pb_int(&p, 3, spm_type(i));
        pb_bytes(&b, 1, p.p, p.n);
        free(p.p);
    }
    buf tr = {0};
    pb_int(&tr, 3, 2); /* BPE */
    if (byte_fallback) pb_int(&tr, 35, 1);
    pb_int(&tr, 40, 0), pb_int(&tr, 41, 1), pb_int(&tr, 42, 2), pb_int(&tr, 43, -1);
    pb_bytes(&b, 2, tr.p, tr.n);
    buf nm = {0};
    pb_bytes(&nm, 1, "identity", 8), pb_int(&nm, 3, dummy), pb_int(&nm, 4, 0);
    pb_bytes(&b, 3, nm.p, nm.n);
    free(tr.p), free(nm.p);
    save_free(name, &b);
}

/* ---- tokenizer.json ------------------------------------------------------------------------------------ */

static void json_file(const char *name, const char *json, const char *config) {
    buf b = {0};
    text(&b, json);
    if (config) u8(&b, 0), text(&b, config); /* fuzz_tok_json: NUL, then tokenizer_config.json */
    save_free(name, &b);
}

/* ---- llama2.c tokenizer.bin ------------------------------------------------------------------------------ */

static void llama2c_tok(void) {
    buf b = {0};
    u32(&b, 8);
    for (int i = 0; i < N_SPM; i++) {
        char s[32];
        const char *v = spm_vocab[i];
        if (i == 1 || i == 2) snprintf(s, sizeof s, "\n%s\n", v);
        else {
            size_t k = 0;
            for (const char *q = v; *q;)
                if (!strncmp(q, "\xE2\x96\x81", 3)) s[k++] = ' ', q += 3;
                else s[k++] = *q++;
            s[k] = 0;
        }
        f32(&b, -(float)i), u32(&b, (uint32_t)strlen(s)), text(&b, s);
    }
    save_free("tokenizer.bin", &b);
}

/* ---- safetensors ------------------------------------------------------------------------------------------ */

static void st_file(void) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                      "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,1,1],\"data_offsets\":[22,24]},"
                      "\"d\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[24,25]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[25,25]}}";
    buf b = {0};
    size_t n = strlen(hdr);
    u64(&b, n), text(&b, hdr);
    for (int i = 0; i < 4; i++) f32(&b, (float)i);
    for (int i = 0; i < 4; i++) u16(&b, 0x3C00);
    u8(&b, 7);
    save_free("model.safetensors", &b);
}

/* ---- llama2.c checkpoint ------------------------------------------------------------------------------------ */

static void llama2c_ckpt(int v1, int shared) {
    const int dim = 8, hidden = 16, layers = 1, heads = 2, kv = 1, vocab = 6, seq = 4, hd = dim / heads;
    buf b = {0};
    if (v1) {
        u32(&b, 0x616b3432u), u32(&b, 1);
        u32(&b, dim), u32(&b, hidden), u32(&b, layers), u32(&b, heads), u32(&b, kv), u32(&b, vocab), u32(&b, seq);
        u8(&b, (uint8_t)shared);
        while (b.n < 256) u8(&b, 0);
    } else {
        u32(&b, dim), u32(&b, hidden), u32(&b, layers), u32(&b, heads), u32(&b, kv), u32(&b, (uint32_t)(shared ? vocab : -vocab)),
            u32(&b, seq);
    }
    size_t floats = (size_t)vocab * dim + (size_t)layers * (2 * dim + heads * hd * dim + 2 * kv * hd * dim + dim * heads * hd +
                                                             3 * hidden * dim) + dim + (shared ? 0 : (size_t)vocab * dim);
    if (!v1) floats += (size_t)seq * hd;
    for (size_t i = 0; i < floats; i++) f32(&b, (float)((i * 29) % 17) / 32.0f - 0.25f);
    char name[64];
    snprintf(name, sizeof name, "llama2c-v%d-%s.bin", v1, shared ? "shared" : "unshared");
    save_free(name, &b);
}

/* ---- tokenizer blobs: serialize what the loaders above accept ------------------------------------------------ */

static void blob_of(const char *src, const char *name) {
    tn_tokenizer *t;
    if (tn_tokenizer_load(src, &t) != 0) {
        fprintf(stderr, "fuzz_seed: %s\n", tn_errmsg());
        exit(1);
    }
    uint8_t *p;
    size_t n;
    if (tn_tokenizer_serialize(t, &p, &n) != 0) exit(1);
    buf b = {p, n, n};
    save(name, &b);
    free(p);
    tn_tokenizer_free(t);
}

static const char *const gpt2_json =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":9,\"content\":\"<|endoftext|>\",\"special\":true},"
    "{\"id\":10,\"content\":\"<user>\",\"special\":false}],\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]},"
    "\"post_processor\":null,\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"\\u0120\":3,\"\\u0120a\":4,"
    "\"ab\":5,\"\\u0120ab\":6,\"1\":7,\"2\":8},\"merges\":[\"\\u0120 a\",[\"a\",\"b\"],\"\\u0120a b\"]}}";
static const char *const llama_json =
    "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}]},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,"
    "\"</s>\":2,\"<0x0A>\":3,\"<0x41>\":4,\"\\u2581\":5,\"a\":6,\"b\":7,\"ab\":8,\"\\u2581a\":9,\"\\u2581ab\":10},"
    "\"merges\":[\"a b\",\"\\u2581 a\",\"\\u2581a b\"]}}";
static const char *const metaspace_json =
    "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"first\",\"split\":false},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"\\u2581\":1,\"x\":2,\"\\u2581x\":3},\"merges\":[[\"\\u2581\",\"x\"]],"
    "\"unk_token\":\"<unk>\"}}";

static void gguf_model(int tied, const char *name) { gguf_model_arch(tied, "llama", 0, name); }

/* ---- Hugging Face config.json: one per family and RoPE layout ------------------------------------------- */

static void hf_configs(void) {
    static const char *const cfgs[] = {
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2, "
        "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 96, "
        "\"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"rope_scaling\": "
        "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
        "\"original_max_position_embeddings\": 16}, \"tie_word_embeddings\": false, \"bos_token_id\": 1, "
        "\"eos_token_id\": [2, 3], \"head_dim\": 8, \"hidden_act\": \"silu\"}",
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2, "
        "\"num_attention_heads\": 4, \"intermediate_size\": 64, \"vocab_size\": 96, \"rope_parameters\": "
        "{\"rope_type\": \"linear\", \"factor\": 4.0, \"rope_theta\": 500.0}, \"tie_word_embeddings\": true}",
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2, "
        "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 96, "
        "\"use_sliding_window\": false, \"sliding_window\": 4096, \"max_window_layers\": 28, \"rope_theta\": 1000000.0, "
        "\"layer_types\": [\"full_attention\", \"full_attention\"], \"rope_scaling\": null}",
        "{\"model_type\": \"qwen3\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"head_dim\": 16, \"intermediate_size\": 64, \"vocab_size\": 96, "
        "\"attention_bias\": false, \"use_sliding_window\": false, \"tie_word_embeddings\": true}",
        "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 1, "
        "\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"intermediate_size\": 64, \"vocab_size\": 96, "
        "\"max_position_embeddings\": 64, \"sliding_window\": null, \"partial_rotary_factor\": 1.0}",
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "config-%zu.json", i);
        buf b = {0};
        put(&b, cfgs[i], strlen(cfgs[i]));
        save_free(name, &b);
    }
}

/* ---- chat templates: one per family, then NUL and "role\0content" pairs ---------------------------------- */

static void chat_seeds(void) {
    static const char *const tpl[] = {
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe "
        "kind.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
        "+ '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "{{- '<think>' }}{{- '</think>' }}{{ '<|im_start|>' }}{{ '<|im_end|>' }}",
        "{{- bos_token }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: "
        "December 2023\\n\" }}{%- set date_string = \"26 Jul 2024\" %}{{ '<|eot_id|>' }}",
        "{% set content = bos_token + '[INST] ' + '<<SYS>>\\n' %}{{ content.strip() + ' [/INST]' + eos_token }}",
        "{{ '<|user|>\n' + message['content'] + eos_token }}\n{{ '<|assistant|>' }}",
        "{{ bos_token }}{{ '[INST] ' + message['content'] + ' [/INST]' }}{{ message['content'] + eos_token + ' ' }}",
    };
    static const char msgs[] = "system\0Be brief.\0user\0Hi <|im_end|> \xC3\xA9\0assistant\0<think>\nhm\n</think>\n\nHello\0user\0  bye  ";
    for (size_t i = 0; i < sizeof tpl / sizeof tpl[0]; i++) {
        buf b = {0};
        put(&b, tpl[i], strlen(tpl[i]) + 1);
        put(&b, msgs, sizeof msgs - 1);
        char name[32];
        snprintf(name, sizeof name, "chat-%zu", i);
        save_free(name, &b);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_seed TARGET DIR\n");
        return 2;
    }
    const char *tg = argv[1];
    out_dir = argv[2];
    if (!strcmp(tg, "gguf")) {
        gguf_vocab(0), gguf_vocab(1), gguf_mixed(), gguf_model(1, "model-tied.gguf");
    } else if (!strcmp(tg, "import_gguf")) {
        gguf_model(1, "model-tied.gguf"), gguf_model(0, "model-untied.gguf");
        gguf_model_arch(1, "qwen2", 0, "qwen2.gguf"), gguf_model_arch(0, "qwen3", 0, "qwen3.gguf");
        gguf_model_arch(0, "llama", 1, "llama3-rope-freqs.gguf");
    } else if (!strcmp(tg, "import_hf")) {
        hf_configs();
    } else if (!strcmp(tg, "tok_spm")) {
        spm_model(1, 1, "bf.model"), spm_model(0, 0, "plain.model");
    } else if (!strcmp(tg, "tok_json")) {
        json_file("gpt2.json", gpt2_json, NULL);
        json_file("gpt2-config.json", gpt2_json, "{\"bos_token\":{\"content\":\"<|endoftext|>\"},\"eos_token\":\"<|endoftext|>\",\"add_bos_token\":true}");
        json_file("llama.json", llama_json, NULL);
        json_file("metaspace.json", metaspace_json, NULL);
    } else if (!strcmp(tg, "tok_llama2c")) {
        llama2c_tok();
    } else if (!strcmp(tg, "tok_blob")) {
        /* every loader's output, serialized: write the sources to DIR, load them, replace by the blobs */
        char src[4096];
        struct {
            void (*write)(void);
            const char *file, *blob;
        } srcs[] = {{llama2c_tok, "tokenizer.bin", "llama2c.tntk"}};
        for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
            srcs[i].write();
            snprintf(src, sizeof src, "%s/%s", out_dir, srcs[i].file);
            blob_of(src, srcs[i].blob);
            remove(src);
        }
        spm_model(1, 1, "bf.model");
        snprintf(src, sizeof src, "%s/bf.model", out_dir), blob_of(src, "spm.tntk"), remove(src);
        gguf_vocab(1);
        snprintf(src, sizeof src, "%s/vocab-gpt2.gguf", out_dir), blob_of(src, "gpt2.tntk"), remove(src);
        json_file("tokenizer.json", llama_json, NULL);
        snprintf(src, sizeof src, "%s/tokenizer.json", out_dir), blob_of(src, "llama-json.tntk"), remove(src);
        blob_of("bytes", "bytes.tntk");
        /* blob version 2: a chat template from the sibling tokenizer_config.json */
        json_file("tokenizer.json", gpt2_json, NULL);
        json_file("tokenizer_config.json", "{\"chat_template\": \"{{ '<|im_start|>' }}{{ '<|im_end|>' }}\"}", NULL);
        snprintf(src, sizeof src, "%s/tokenizer.json", out_dir), blob_of(src, "chat.tntk"), remove(src);
        snprintf(src, sizeof src, "%s/tokenizer_config.json", out_dir), remove(src);
    } else if (!strcmp(tg, "chat")) {
        chat_seeds();
    } else if (!strcmp(tg, "safetensors")) {
        st_file();
    } else if (!strcmp(tg, "import_llama2c")) {
        llama2c_ckpt(0, 1), llama2c_ckpt(0, 0), llama2c_ckpt(1, 1), llama2c_ckpt(1, 0);
    } else {
        fprintf(stderr, "fuzz_seed: unknown target '%s'\n", tg);
        return 2;
    }
    printf("fuzz_seed: %d seed(s) for %s in %s\n", n_written, tg, out_dir);
    return 0;
}
