/* CLIP byte-level BPE tokenizer (the prompt → ids step of both Kandinsky priors).
 *
 * The definition of correct is transformers' CLIPTokenizer as pinned in
 * tools/reference/requirements.txt (5.24.0, backed by the `tokenizers` library; transformers 5 has no
 * Python "slow" CLIP tokenizer any more and never calls ftfy). Per prompt it does:
 *   1. split out the added tokens whose `normalized` flag is false, matched on the raw text
 *      (leftmost-longest; e.g. "<|endoftext|>" → 49407, and "!" → 0 when "!" is the pad token);
 *   2. normalise each remaining piece on its own: NFC, every run of Unicode White_Space → " ",
 *      lowercase per code point (Unicode full mapping: "İ" → "i̇"; no final-sigma rule);
 *   3. split out the added tokens whose `normalized` flag is true, matched on that normalised text;
 *   4. pre-tokenise the rest with <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 *      [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (case-sensitive, leftmost-first; unmatched text, i.e. white
 *      space, is dropped), then split again by the GPT-2 byte-level regex (which only changes
 *      the literal "<|startoftext|>"/"<|endoftext|>" pieces: "<|", name, "|>");
 *   5. each word → UTF-8 bytes → GPT-2 byte→unicode symbols, "</w>" appended to the last one →
 *      lowest-rank merge first (leftmost on ties) until no pair has a rank;
 *   6. truncate to max_len - 2 tokens, add BOS / EOS, pad with the pad token to max_len.
 * No HTML unescaping, no ftfy, no strip: those belonged to OpenAI's simple_tokenizer.py and to the
 * transformers 4 slow tokenizer. Unicode classes and case mappings come from utf8proc, with a small
 * table for code points newer than the utf8proc on the build machine (tests/test_clip_tokenizer.c
 * checks every code point against the reference).
 *
 * Long prompts: tokenising stops as soon as max_len - 2 tokens exist; the text is normalised in
 * chunks that end before white space, so memory is bounded by the longest run of text without white
 * space (about 30 bytes per byte of that run, for the BPE of one huge word) and time is linear in
 * what is read (the UTF-8 check and the search for raw added tokens read the whole prompt).
 *
 * A kd_clip_tokenizer is immutable after loading: any number of threads may tokenise with it. */
#ifndef KD_TEXT_CLIP_TOKENIZER_H
#define KD_TEXT_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct kd_clip_tokenizer kd_clip_tokenizer;

/* A Hugging Face CLIP tokenizer folder as the Kandinsky priors ship it: vocab.json, merges.txt, and
 * optionally tokenizer_config.json and special_tokens_map.json. Special tokens, their flags and the
 * pad token are resolved the way transformers 5.24 resolves them (see docs/NOTES.md, "CLIP
 * tokenizer"). Refused with KD_ERR_UNSUPPORTED: a folder holding tokenizer.json or added_tokens.json
 * (transformers would take the vocabulary or added tokens from those), added tokens that are not
 * in vocab.json, and added tokens with lstrip / rstrip / single_word set. */
kd_status kd_clip_tokenizer_load_hf(const char *dir, kd_clip_tokenizer **out, kd_err *e);

/* OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip; the first 48894 merges after the header line are
 * used, as in simple_tokenizer.py). The result tokenises exactly like the HF folder that vocabulary
 * converts to, with the special tokens of the Kandinsky prior folders: "<|startoftext|>" and
 * "<|endoftext|>" as added tokens matched after normalisation, and pad_token (NULL means
 * "<|endoftext|>", the 2.2 prior; "!" is the 2.1 prior) as a special token matched on the raw text,
 * which it also is when it is "!" — every "!" in a prompt then becomes id 0, as in transformers. */
kd_status kd_clip_tokenizer_load_openai(const char *bpe_gz_path, const char *pad_token,
                                        kd_clip_tokenizer **out, kd_err *e);

void kd_clip_tokenizer_free(kd_clip_tokenizer *t);

/* Tokenises text[0..len) (UTF-8; NUL bytes are ordinary characters) into ids[max_len] and
 * mask[max_len] (mask may be NULL): [BOS] + tokens[:max_len-2] + [EOS], then pad ids with mask 0.
 * *n_real (may be NULL) gets the number of mask-1 positions. max_len must be >= 2.
 * Invalid UTF-8 (truncated or overlong sequences, surrogates, > U+10FFFF) is KD_ERR_INVALID_ARG with
 * a message naming the byte offset; ids and mask are then left untouched. */
kd_status kd_clip_tokenize(const kd_clip_tokenizer *t, const char *text, size_t len, int max_len,
                           int32_t *ids, int32_t *mask, int *n_real, kd_err *e);

int kd_clip_tokenizer_pad_id(const kd_clip_tokenizer *t);  /* 2.1 prior: 0 ("!"); 2.2: 49407 */
int kd_clip_tokenizer_bos_id(const kd_clip_tokenizer *t);  /* 49406 */
int kd_clip_tokenizer_eos_id(const kd_clip_tokenizer *t);  /* 49407: the text encoder pools here */
int kd_clip_tokenizer_vocab_size(const kd_clip_tokenizer *t);
/* model_max_length from tokenizer_config.json (77 for the priors); -1 when absent or huge (as
 * transformers writes "no limit"); 77 for the OpenAI file (its context length). */
int kd_clip_tokenizer_model_max_length(const kd_clip_tokenizer *t);

/* ---- internals exposed for tests ---- */

/* Class of a code point in the pre-tokeniser regex: 'L' (\p{L}), 'N' (\p{N}), 'S' (\s = Unicode
 * White_Space), 'O' (anything else). */
int kd_clip_char_class(uint32_t cp);
/* The normaliser (NFC, white space runs → " ", lowercase) on a UTF-8 string; *out is malloc'd
 * UTF-8 (not NUL-terminated; free() it). The input must be valid UTF-8. */
kd_status kd_clip_normalize(const char *s, size_t n, char **out, size_t *out_len, kd_err *e);

#endif
