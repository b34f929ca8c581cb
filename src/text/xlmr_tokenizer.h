/* XLM-RoBERTa SentencePiece tokenizer (the prompt → ids step of the Kandinsky 2.1 decoder's
 * MultilingualCLIP text encoder).
 *
 * The definition of correct is transformers' XLMRobertaTokenizer as pinned in
 * tools/reference/requirements.txt (5.24.0). transformers 5 has no sentencepiece-backed XLM-R
 * tokenizer: it runs the `tokenizers` library on a pipeline it builds itself, whether it loads the
 * SentencePiece `sentencepiece.bpe.model` or the Hub's `tokenizer.json`:
 *   1. split out the added tokens (<s>, <pad>, </s>, <unk>, <mask>: special, matched on the raw
 *      text, leftmost-longest; lstrip / rstrip / single_word honoured);
 *   2. normalise each remaining piece with the model's precompiled charsmap (nmt_nfkc for XLM-R) the
 *      way the tokenizers library does it, which is NOT what sentencepiece does: per extended
 *      grapheme cluster, a cluster shorter than 6 bytes is replaced by the entry of its SHORTEST
 *      prefix that has one (so "Ａ\u0301" → "A": the accent is lost), longer clusters char by char;
 *   3. split at Unicode White_Space (dropped), prepend "▁" to every word that does not start with
 *      "▁", split again before every "▁" (Metaspace, prepend_scheme "always");
 *   4. Unigram Viterbi per piece over every vocabulary entry (including "<s>", "<pad>", "</s>",
 *      "<unk>" and "<mask>" with their score 0.0: "＜s＞" normalises to "<s>" and becomes id 0),
 *      scores in double, ties to the earlier start; a character no entry covers on its own is an
 *      unknown node with score min_score - 10; consecutive unknowns fuse into one token, whose id
 *      is looked up by its text (<unk> unless that text is an entry; byte fallback if the model
 *      says so);
 *   5. truncate to max_len - 2 tokens, add <s> … </s> (post-processor), pad with <pad> to max_len.
 * Ids: <s> 0, <pad> 1, </s> 2, <unk> 3, SentencePiece piece i (i >= 3) → i + 1, <mask> = pieces + 1
 * (250001 for the real 250000-piece model); the vocabulary has pieces + 2 ids (250002).
 * From a tokenizer.json the pipeline it describes is run (normalizer, pre_tokenizer, model,
 * post_processor, added_tokens), which for every file with XLM-R's schema is the pipeline above;
 * docs/NOTES.md ("XLM-R tokenizer") lists what is supported and where transformers 5 would rebuild
 * the pipeline differently.
 *
 * KD_XLMR_SENTENCEPIECE (load flag, .model only) instead reproduces transformers 4's slow
 * tokenizer, i.e. sentencepiece itself: special tokens split out (<mask> strips Python white space
 * on its left), sentencepiece's normaliser (longest charsmap match over bytes, leading / trailing /
 * repeated spaces removed, dummy prefix, spaces → "▁"), one Viterbi over the whole normalised text
 * with sentencepiece's float arithmetic and piece types (control / unknown / unused pieces never
 * match, user-defined pieces win), or sentencepiece's BPE for model_type BPE. It differs from
 * transformers 5 on decomposed text (NFD Vietnamese, Korean jamo, Japanese dakuten), on U+0085, on
 * full-width "＜s＞", on a literal leading "▁", …: tests/data/xlmr_tokenizer/disagreements.txt.
 *
 * Long prompts: tokenising stops as soon as max_len - 2 tokens are final. The charsmap
 * normaliser streams grapheme by grapheme, and the Viterbi search commits the prefix that every
 * surviving path shares, so memory stays bounded even for one 10 MB word (unless no two paths
 * converge, which no real vocabulary does); the UTF-8 check and the search for added tokens read
 * the whole prompt. Pipelines with other normalisers (NFKC, Replace, …), normalised added tokens
 * or sentencepiece BPE hold the current piece of text (between added tokens) in memory.
 *
 * A kd_xlmr_tokenizer is immutable after loading: any number of threads may tokenise with it. */
#ifndef KD_TEXT_XLMR_TOKENIZER_H
#define KD_TEXT_XLMR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct kd_xlmr_tokenizer kd_xlmr_tokenizer;

/* Load flag: reproduce sentencepiece / transformers 4's slow tokenizer (needs a .model). */
#define KD_XLMR_SENTENCEPIECE 1u

/* Load flag: T5 / mT5's id mapping (T5Tokenizer): a .model whose pieces 0, 1, 2 are <pad>, </s>,
 * <unk> keeps the SentencePiece ids, then the sentinels <extra_id_{E-1}> ... <extra_id_0> (E extra
 * ids, 100 unless said otherwise) take the next E ids; no prefix, "</s>" after the tokens, <pad> 0,
 * no <mask>. */
#define KD_XLMR_T5 2u

/* path: a SentencePiece .model file, a tokenizer.json, or a folder holding tokenizer.json and/or
 * sentencepiece.bpe.model (tokenizer.json is preferred, as transformers prefers it; with
 * KD_XLMR_SENTENCEPIECE the .model). A file is told apart by its content (JSON starts with '{').
 * Errors: KD_ERR_NOT_FOUND (missing file / folder without either file), KD_ERR_IO, KD_ERR_FORMAT
 * (truncated or malformed protobuf / JSON / charsmap, with the file and byte offset),
 * KD_ERR_UNSUPPORTED (e.g. a BPE tokenizer.json, an unknown normaliser type). */
kd_status kd_xlmr_tokenizer_load(const char *path, kd_xlmr_tokenizer **out, kd_err *e);
kd_status kd_xlmr_tokenizer_load_ex(const char *path, unsigned flags, kd_xlmr_tokenizer **out, kd_err *e);
/* The same from memory (origin names the data in messages). */
kd_status kd_xlmr_tokenizer_load_model_mem(const void *data, size_t n, unsigned flags, const char *origin,
                                           kd_xlmr_tokenizer **out, kd_err *e);
kd_status kd_xlmr_tokenizer_load_json_mem(const char *data, size_t n, unsigned flags, const char *origin,
                                          kd_xlmr_tokenizer **out, kd_err *e);

/* The mT5 tokenizer of a folder as transformers' T5Tokenizer.from_pretrained loads it: its
 * tokenizer.json if there is one, else spiece.model with the "extra_ids" of tokenizer_config.json
 * (100 when the file or the key is absent); or one such file. flags: KD_XLMR_SENTENCEPIECE or 0
 * (KD_XLMR_T5 is implied). */
kd_status kd_t5_tokenizer_load(const char *path, unsigned flags, kd_xlmr_tokenizer **out, kd_err *e);

void kd_xlmr_tokenizer_free(kd_xlmr_tokenizer *t);

/* Tokenises text[0..len) (UTF-8; NUL bytes are ordinary characters) into ids[max_len] and
 * mask[max_len] (mask may be NULL): prefix specials + tokens[:max_len - specials] + suffix specials
 * (<s> … </s> for XLM-R), then <pad> with mask 0. *n_real (may be NULL) gets the number of mask-1
 * positions. max_len must be at least the number of special tokens the post-processor adds (2).
 * Invalid UTF-8 (truncated or overlong sequences, surrogates, > U+10FFFF) is KD_ERR_INVALID_ARG
 * with a message naming the byte offset; ids and mask are then left untouched. */
kd_status kd_xlmr_tokenize(const kd_xlmr_tokenizer *t, const char *text, size_t len, int max_len,
                           int32_t *ids, int32_t *mask, int *n_real, kd_err *e);

int kd_xlmr_tokenizer_vocab_size(const kd_xlmr_tokenizer *t); /* 250002 for XLM-R */
int kd_xlmr_tokenizer_pad_id(const kd_xlmr_tokenizer *t);     /* 1 */
int kd_xlmr_tokenizer_bos_id(const kd_xlmr_tokenizer *t);     /* 0 (-1 without a prefix special) */
int kd_xlmr_tokenizer_eos_id(const kd_xlmr_tokenizer *t);     /* 2 (-1 without a suffix special) */
int kd_xlmr_tokenizer_unk_id(const kd_xlmr_tokenizer *t);     /* 3 */
int kd_xlmr_tokenizer_mask_id(const kd_xlmr_tokenizer *t);    /* 250001; -1 if there is no <mask> */
/* The text of an id (NUL-terminated, owned by t; NUL bytes inside a piece end it early), or NULL. */
const char *kd_xlmr_tokenizer_piece(const kd_xlmr_tokenizer *t, int id);

/* ---- internals exposed for tests ---- */

/* The normaliser (charsmap per grapheme as the tokenizers library applies it, or, with
 * KD_XLMR_SENTENCEPIECE, sentencepiece's whole normaliser with "▁" escaping) on valid UTF-8;
 * *out is malloc'd (not NUL-terminated; free() it). */
kd_status kd_xlmr_normalize(const kd_xlmr_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len,
                            kd_err *e);

#endif
