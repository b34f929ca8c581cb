#!/usr/bin/env bash
# Command-line tests: the README's generate command on the shipped tiny models, and the error
# paths users hit (bad numbers, missing options, missing or corrupt model folders). Each case
# checks the exit code and a piece of the message; the MoVQ autoencode / decode cases also check
# the images they write (size from the PNG header; pixels through kt_imgcmp, tests/imgcmp.c).
# bash + coreutils only (no Python in CI).
set -u
BIN=${1:?usage: test_cli.sh path/to/kandinsky [path/to/kt_imgcmp]}
IMGCMP=${2:-} # without it the pixel checks are skipped (and say so)
DATA=${KD_TEST_DATA:-$(dirname "$0")/data}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0 failed=0

check() { # name, expected exit code, expected substring (stderr+stdout), command...
  local name=$1 code=$2 want=$3
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$code" ] && [[ "$out" == *"$want"* ]]; then
    passed=$((passed + 1))
    echo "  ok $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name: exit $rc (want $code), output: ${out:0:400}"
  fi
}

verify() { # name, command...: a check that passes when the command exits 0; shows what it printed
  local name=$1
  shift
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "  ok $name${out:+: ${out:0:200}}"
  else
    failed=$((failed + 1))
    echo "FAIL $name: exit $rc, output: ${out:0:400}"
  fi
}

skipped=0
skip() { # what (why)
  skipped=$((skipped + 1))
  echo "SKIP: $*"
}

png_is() { # file, width, height: an 8-bit RGB PNG of that size (signature and IHDR read with od)
  local sig w0 w1 w2 w3 h0 h1 h2 h3 depth ctype
  sig=$(od -An -v -tu1 -N16 "$1" 2>/dev/null | tr -s ' \n' ' ')
  if [ "$sig" != " 137 80 78 71 13 10 26 10 0 0 0 13 73 72 68 82 " ]; then
    echo "$1: not a PNG starting with its IHDR chunk (first bytes:$sig)"
    return 1
  fi
  read -r w0 w1 w2 w3 h0 h1 h2 h3 depth ctype < <(od -An -v -tu1 -j16 -N10 "$1" | tr -s ' \n' ' ')
  local w=$(((w0 << 24) | (w1 << 16) | (w2 << 8) | w3)) h=$(((h0 << 24) | (h1 << 16) | (h2 << 8) | h3))
  echo "${w}x${h}, bit depth $depth, color type $ctype"
  [ "$w" -eq "$2" ] && [ "$h" -eq "$3" ] && [ "$depth" -eq 8 ] && [ "$ctype" -eq 2 ]
}

have_imgcmp() { [ -n "$IMGCMP" ] && [ -x "$IMGCMP" ]; }
NO_IMGCMP="no kt_imgcmp: pass its path as the second argument"

pixels() { # name, kt_imgcmp arguments...: a pixel check, skipped (saying so) without kt_imgcmp
  local name=$1
  shift
  if ! have_imgcmp; then
    skip "$name ($NO_IMGCMP)"
    return
  fi
  verify "$name" "$IMGCMP" "$@"
}

P="$DATA/pipeline22/prior"
D="$DATA/pipeline22/decoder"
gen=("$BIN" generate --prior "$P" --decoder "$D" -q)

check "version" 0 "kandinsky " "$BIN" --version
check "help" 0 "generate -p PROMPT" "$BIN" --help
check "generate --help" 0 "--negative-prompt" "$BIN" generate --help
check "unknown command" 2 "unknown command" "$BIN" frobnicate
check "no prompt" 2 "needs a prompt" "${gen[@]}"
check "bad width" 2 "expects an integer" "${gen[@]}" -p x -W abc
check "width too large" 2 "1..8192" "${gen[@]}" -p x -W 60000
check "steps 0" 2 "--steps expects an integer in 1..1000" "${gen[@]}" -p x --steps 0
check "prior steps 1" 2 "2..1000" "${gen[@]}" -p x --prior-steps 1
check "bad guidance" 2 "expects a number" "${gen[@]}" -p x -g nan
check "bad seed" 2 "integer seed" "${gen[@]}" -p x -s 12abc
check "missing value" 2 "needs a value" "${gen[@]}" -p
check "unknown option" 2 "unknown option" "${gen[@]}" -p x --frob
# no model options: the default Hub ids, resolved in an empty cache with offline mode on (no network)
check "no model folders (default Hub ids, offline, empty cache)" 1 "kandinsky-community/kandinsky-2-2-decoder: not in the local cache and offline mode is on" \
  env -u KD_PRIOR -u KD_DECODER -u HF_HUB_CACHE -u HUGGINGFACE_HUB_CACHE HF_HUB_OFFLINE=1 HF_HOME="$TMP/hf-empty" "$BIN" generate -p x -q
check "--model-version 2.1 default Hub ids" 1 "kandinsky-community/kandinsky-2-1: not in the local cache" \
  env -u KD_PRIOR -u KD_DECODER -u HF_HUB_CACHE -u HUGGINGFACE_HUB_CACHE HF_HUB_OFFLINE=1 HF_HOME="$TMP/hf-empty" "$BIN" generate -p x -q --model-version 2.1
check "--model-version 1.9" 2 "expects 2.0, 2.1 or 2.2" "${gen[@]}" -p x --model-version 1.9
check "--model-version 2.0 with a 2.2 decoder" 2 "is Kandinsky 2.2" "${gen[@]}" -p x --model-version 2.0
check "--model-version 2.0 default Hub id" 1 "sberbank-ai/Kandinsky_2.0: not in the local cache" \
  env -u KD_PRIOR -u KD_DECODER -u HF_HUB_CACHE -u HUGGINGFACE_HUB_CACHE HF_HUB_OFFLINE=1 HF_HOME="$TMP/hf-empty" "$BIN" generate -p x -q --model-version 2.0
check "--model-version 2.1 with a 2.2 decoder" 2 "is Kandinsky 2.2" "${gen[@]}" -p x --model-version 2.1
check "missing prior folder" 1 "/nonexistent" "$BIN" generate -p x --prior /nonexistent --decoder "$D" -q

# a decoder folder whose U-Net weights are truncated
cp -rL "$D" "$TMP/dec"
head -c 1000 "$D/unet/diffusion_pytorch_model.safetensors" > "$TMP/dec/unet/diffusion_pytorch_model.safetensors"
check "truncated U-Net" 1 "diffusion_pytorch_model.safetensors" "$BIN" generate -p x --prior "$P" --decoder "$TMP/dec" -q
echo '{"block_out_channels": "oops"' > "$TMP/dec/unet/config.json"
check "corrupt config.json" 1 "config.json" "$BIN" generate -p x --prior "$P" --decoder "$TMP/dec" -q

# the README's main command (tiny models), then the same seed again: identical file
check "generate" 0 "cat.png" "${gen[@]}" -p "a red cat on a chair" -W 64 -H 64 --steps 10 --prior-steps 10 -s 42 -o "$TMP/cat.png"
check "generate again" 0 "cat2.png" "${gen[@]}" -p "a red cat on a chair" -W 64 -H 64 --steps 10 --prior-steps 10 -s 42 -o "$TMP/cat2.png"
if cmp -s "$TMP/cat.png" "$TMP/cat2.png"; then passed=$((passed + 1)); echo "  ok same seed, same file"; else failed=$((failed + 1)); echo "FAIL same seed gave different files"; fi
check "two images" 0 "out-2.png" "${gen[@]}" -p "two" -W 32 -H 32 --steps 3 --prior-steps 3 -n 2 -o "$TMP/out.png"
check "negative prompt, jpeg" 0 "neg.jpg" "${gen[@]}" -p "a" --negative-prompt "b" -W 32 -H 32 --steps 3 --prior-steps 3 -o "$TMP/neg.jpg"
check "bad output type" 1 "unknown image type" "${gen[@]}" -p "a" -W 32 -H 32 --steps 2 --prior-steps 2 -o "$TMP/x.bmp"

# image editing
IN="$DATA/pipeline22/inputs"
check "img2img" 0 "i2i.png" "${gen[@]}" -p "a lake" -i "$IN/init_97x61.png" --strength 0.5 -W 32 -H 32 --steps 4 --prior-steps 2 -o "$TMP/i2i.png"
check "strength 2" 1 "strength" "${gen[@]}" -p "a lake" -i "$IN/init_97x61.png" --strength 2 -W 32 -H 32 --steps 4 --prior-steps 2 -o "$TMP/x.png"
check "missing init image" 2 "/nonexistent.png" "${gen[@]}" -p x -i /nonexistent.png
check "mask without image" 2 "--init-image" "${gen[@]}" -p x -m "$IN/mask_50x40.png"
check "inpaint" 0 "inp.png" "$BIN" generate --prior "$P" --decoder "$DATA/pipeline22/decoder_inpaint" -q -p "a ball" -i "$IN/init_97x61.png" -m "$IN/mask_50x40.png" -W 32 -H 32 --steps 3 --prior-steps 2 -o "$TMP/inp.png"
check "mask with the text2img decoder" 1 "inpainting" "${gen[@]}" -p "a ball" -i "$IN/init_97x61.png" -m "$IN/mask_50x40.png" -W 32 -H 32 --steps 3 --prior-steps 2 -o "$TMP/x.png"
check "controlnet" 0 "cn.png" "$BIN" generate --prior "$P" --decoder "$DATA/pipeline22/decoder_controlnet" -q -p "a robot" --hint "$IN/depth_128x128.png" -W 32 -H 32 --steps 3 --prior-steps 2 -o "$TMP/cn.png"
check "controlnet without hint" 1 "hint" "$BIN" generate --prior "$P" --decoder "$DATA/pipeline22/decoder_controlnet" -q -p "a robot" -W 32 -H 32 --steps 2 --prior-steps 2 -o "$TMP/x.png"
check "mix of prompts" 0 "mix.png" "${gen[@]}" --mix "text:a cat:0.7" --mix "text:a dog: with colon:0.3" -W 32 -H 32 --steps 3 --prior-steps 2 -o "$TMP/mix.png"
check "mix with an image" 0 "mixi.png" "${gen[@]}" --mix "text:a cat:0.7" --mix "image:$IN/mix_40x28.png:0.3" -W 32 -H 32 --steps 3 --prior-steps 2 -o "$TMP/mixi.png"
check "prior emb2emb" 0 "e2e.png" "${gen[@]}" -p "a castle" --prior-image "$IN/mix_40x28.png" --prior-strength 0.5 -W 32 -H 32 --steps 3 --prior-steps 4 -o "$TMP/e2e.png"
# samplers by name
check "generate --help lists the samplers" 0 "dpm++2m-karras" "$BIN" generate --help
check "unknown sampler" 2 "unknown sampler 'dpm++9m' (one of: ddpm, ddim, unclip, dpm++2m" "${gen[@]}" -p x --sampler dpm++9m
check "unknown prior sampler" 2 "--prior-sampler: unknown sampler" "${gen[@]}" -p x --prior-sampler Euler
check "dpm++2m" 0 "dpm.png" "${gen[@]}" -p "a lake" --sampler dpm++2m -W 32 -H 32 --steps 4 --prior-steps 3 -s 5 -o "$TMP/dpm.png"
check "dpm++2m prior, heun decoder" 0 "heun.png" "${gen[@]}" -p "a lake" --prior-sampler dpm++2m --sampler heun -W 32 -H 32 --steps 3 --prior-steps 3 -s 5 -o "$TMP/heun.png"
if grep -a -q "sampler: dpm++2m" "$TMP/dpm.png"; then passed=$((passed + 1)); echo "  ok the PNG parameters name the sampler"; else failed=$((failed + 1)); echo "FAIL the PNG parameters do not name the sampler"; fi
# compute precision and 8-bit weights: same run in fp32, bf16 and with q8 weights. The images must
# stay close to fp32 (PSNR; measured 31-35 dB on these tiny random models) yet not be identical
# where the CPU computes bf16 (where it does not, bf16 runs fp32 and says so).
check "bad --precision" 2 "--precision expects fp32 or bf16, got 'fp16'" "${gen[@]}" -p x --precision fp16
check "bad --weights" 2 "--weights expects q8 or stored, got 'q4'" "${gen[@]}" -p x --weights q4
lp=("${gen[@]}" -p "a red cat" -W 64 -H 64 --steps 6 --prior-steps 3 -s 42)
check "fp32" 0 "lp32.png" "${lp[@]}" -o "$TMP/lp32.png"
check "bf16" 0 "lpbf.png" "${lp[@]}" --precision bf16 -o "$TMP/lpbf.png"
check "q8 weights" 0 "lpq8.png" "${lp[@]}" --weights q8 -o "$TMP/lpq8.png"
check "bf16 + q8 weights" 0 "lpbq.png" "${lp[@]}" --precision bf16 --weights q8 -o "$TMP/lpbq.png"
pixels "bf16 image close to fp32" psnr "$TMP/lp32.png" "$TMP/lpbf.png" 25
pixels "q8 image close to fp32" psnr "$TMP/lp32.png" "$TMP/lpq8.png" 25
pixels "bf16 + q8 image close to fp32" psnr "$TMP/lp32.png" "$TMP/lpbq.png" 25
if grep -a -q "weights: q8" "$TMP/lpq8.png"; then passed=$((passed + 1)); echo "  ok the PNG parameters name the weights"; else failed=$((failed + 1)); echo "FAIL the PNG parameters do not name q8 weights"; fi
if "$BIN" generate -p x --precision bf16 --prior /nonexistent 2>&1 | grep -q "no BF16 products"; then
  check "bf16 without BF16 hardware says so" 0 "" true
elif grep -a -q "precision: bf16" "$TMP/lpbf.png"; then
  pixels "bf16 image differs from fp32" psnr "$TMP/lp32.png" "$TMP/lpbf.png" 0
  if "$IMGCMP" same "$TMP/lp32.png" "$TMP/lpbf.png" 0 >/dev/null 2>&1; then failed=$((failed + 1)); echo "FAIL bf16 gave the fp32 image bit for bit"; else passed=$((passed + 1)); echo "  ok bf16 computes differently from fp32"; fi
fi
# kandinsky convert --weights q8: the converted folders give exactly the image of --weights q8
check "convert --help" 0 "q8_0" "$BIN" convert --help
check "convert needs --weights q8" 2 "usage: kandinsky convert" "$BIN" convert "$P" "$TMP/q8p"
check "convert into its own input" 1 "inside" "$BIN" convert --weights q8 "$D" "$D/q8"
check "convert a missing folder" 1 "is not a folder" "$BIN" convert --weights q8 "$TMP/nope" "$TMP/q8x"
check "convert the prior" 0 "tensors quantised" "$BIN" convert --weights q8 "$P" "$TMP/q8p"
check "convert the decoder" 0 "unet/diffusion_pytorch_model.safetensors: " "$BIN" convert --weights q8 "$D" "$TMP/q8d"
check "generate from the converted folders" 0 "lpconv.png" "$BIN" generate --prior "$TMP/q8p" --decoder "$TMP/q8d" -q -p "a red cat" -W 64 -H 64 --steps 6 --prior-steps 3 -s 42 -o "$TMP/lpconv.png"
pixels "converted folders = --weights q8, bit for bit" same "$TMP/lpq8.png" "$TMP/lpconv.png" 0
check "inspect shows int8 weights" 0 "_scale" "$BIN" inspect "$TMP/q8d/unet/diffusion_pytorch_model.safetensors"
check "bad mix spec" 2 "--mix expects" "${gen[@]}" --mix "text:no weight"
check "bad mix kind" 2 "kind must be" "${gen[@]}" --mix "video:x.mp4:1"
check "missing decoder scheduler" 1 "nope/scheduler_config.json" "${gen[@]}" -p x -W 32 -H 32 --steps 2 --prior-steps 2 --decoder-scheduler nope
gen21=("$BIN" generate --prior "$DATA/pipeline21/prior" -q -p "красный" -W 32 -H 32 --steps 6 --prior-steps 2 -s 1 --decoder-scheduler ddpm_scheduler)
check "2.1 with ddpm_scheduler" 0 "" "${gen21[@]}" --model-version 2.1 --decoder "$DATA/pipeline21/decoder_ddpm" -o "$TMP/ddpm.png"
check "2.1 with q8 weights (MCLIP / XLM-R quantised too)" 0 "" "${gen21[@]}" --model-version 2.1 --decoder "$DATA/pipeline21/decoder_ddpm" --weights q8 -o "$TMP/ddpm_q8.png"
pixels "2.1 q8 image close to fp32 (26 dB measured; another seed is 12 dB away)" psnr "$TMP/ddpm.png" "$TMP/ddpm_q8.png" 20
# the random U-Net of decoder/ drives learned_range to inf (diffusers gives a black image)
check "diverged run" 1 "latents are not finite" "${gen21[@]}" --decoder "$DATA/pipeline21/decoder" -o "$TMP/nan.png"

# Kandinsky 2.0 from its original-layout folder (no prior; version from the files): the image of the
# original code (tools/reference/gen_pipeline20.py, case t2i_plms) within 1/255, and an inpainting run
M20="$DATA/pipeline20/model"
check "2.0 text to image (plms_sampler, version detected)" 0 "" "$BIN" generate --decoder "$M20" -q -p "一只红色的猫" \
  -W 64 -H 64 --steps 5 -s 13 --sampler plms_sampler -o "$TMP/k20.png"
pixels "2.0 text to image: the original code's pixels within 1/255" same "$TMP/k20.png" "$DATA/pipeline20/t2i_plms_0.png" 1
check "2.0 inpainting (p_sampler)" 0 "" "$BIN" generate --model-version 2.0 --decoder "$M20" -q -p "a green hat" \
  -s 17 --steps 5 --sampler p_sampler -i "$DATA/pipeline20/init.png" -m "$DATA/pipeline20/mask.png" -o "$TMP/k20i.png"
pixels "2.0 inpainting: the original code's pixels within 1/255" same "$TMP/k20i.png" "$DATA/pipeline20/inp_p_0.png" 1
check "2.0 has no negative prompt" 1 "no negative prompt" "$BIN" generate --decoder "$M20" -q -p x --negative-prompt y -W 64 -H 64 --steps 2
check "2.0 unknown sampler" 2 "unknown sampler" "$BIN" generate --decoder "$M20" -q -p x --sampler frob
check "2.0 eta out of range" 2 "--eta must be in [0, 1]" "$BIN" generate --decoder "$M20" -q -p x --eta 2

# MoVQ round trips. decoder/movq has factor 2 and 4 latent channels: the 97x61 input is resized to
# 96x60, its latents are [1, 4, 30, 48]. Its weights are random, so the output does not look like
# the input; what is checked: the size, that it is not a constant image, that a second run gives
# the same bytes, and that decoding the saved latents gives exactly the image autoencode wrote.
check "autoencode" 0 "" "$BIN" autoencode --model "$D/movq" "$DATA/images/src_97x61.png" "$TMP/ae.png" --latents-out "$TMP/lat.safetensors"
verify "autoencode writes a 96x60 RGB PNG" png_is "$TMP/ae.png" 96 60
check "autoencode --latents-out: one F32 [1, 4, 30, 48] tensor 'latents'" 0 "latents  F32    [1, 4, 30, 48]" "$BIN" inspect "$TMP/lat.safetensors"
pixels "autoencode output is not a constant image (some channel spans >= 64 levels)" varied "$TMP/ae.png" 64
check "autoencode again" 0 "" "$BIN" autoencode --model "$D/movq" "$DATA/images/src_97x61.png" "$TMP/ae2.png" --latents-out "$TMP/lat2.safetensors"
verify "autoencode twice: same image bytes" cmp "$TMP/ae.png" "$TMP/ae2.png"
verify "autoencode twice: same latents bytes" cmp "$TMP/lat.safetensors" "$TMP/lat2.safetensors"
check "decode latents" 0 "" "$BIN" decode --model "$D/movq" "$TMP/lat.safetensors" "$TMP/dec.png"
verify "decode writes a 96x60 RGB PNG" png_is "$TMP/dec.png" 96 60
verify "decode of autoencode's latents: the same bytes as autoencode's image" cmp "$TMP/ae.png" "$TMP/dec.png"
# decode against diffusers (tools/reference/gen_movq.py: VQModel.decode(latents, force_not_quantize=True)
# of b1_64x64.latents), turned into pixels as diffusers' postprocess does; tolerance 1/255: the
# float outputs agree within 1e-4 of their range (tests/test_movq.c), which can move a value
# across a rounding boundary by one level, no more
for m in kandinsky_small two_level; do
  if ! have_imgcmp; then
    skip "decode with $m against diffusers' pixels ($NO_IMGCMP)"
    continue
  fi
  verify "extract $m b1_64x64.latents" "$IMGCMP" extract "$DATA/movq/${m}_cases.safetensors" b1_64x64.latents "$TMP/$m-lat.safetensors"
  check "decode with $m" 0 "" "$BIN" decode --model "$DATA/movq/$m" "$TMP/$m-lat.safetensors" "$TMP/$m.png"
  verify "decode with $m writes a 64x64 RGB PNG" png_is "$TMP/$m.png" 64 64
  verify "decode with $m: pixels within 1/255 of diffusers'" "$IMGCMP" ref "$TMP/$m.png" "$DATA/movq/${m}_cases.safetensors" b1_64x64.decoded 1
done
check "autoencode of a non-image" 1 "random.bin" "$BIN" autoencode --model "$D/movq" "$DATA/images/bad/random.bin" "$TMP/x.png"
check "decode of a non-safetensors file" 1 "header" "$BIN" decode --model "$D/movq" "$DATA/images/src_97x61.png" "$TMP/x.png"
check "inspect" 0 "conv_in.weight" "$BIN" inspect "$D/unet"

echo "test_cli: $passed passed, $failed failed, $skipped skipped"
if [ $((passed + failed)) -eq 0 ]; then
  echo "FAIL test_cli: no check ran"
  exit 1
fi
[ "$skipped" -eq 0 ] || echo "test_cli: $skipped check(s) skipped (see the SKIP lines above)"
[ "$failed" -eq 0 ]
