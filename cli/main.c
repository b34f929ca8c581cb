/* kandinsky — command-line front end. Includes only the public header. */
#include <stdio.h>
#include <string.h>

#include "kandinsky.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kandinsky <command> [options]\n"
            "\n"
            "commands:\n"
            "  inspect PATH     list the tensors (name, dtype, shape) of a .safetensors file, a sharded\n"
            "                   *.safetensors.index.json, or a model folder, and print its config.json\n"
            "  --version        print the version\n"
            "  --help           this text\n"
            "\n"
            "environment: KD_THREADS=N sets the number of CPU threads (default: all cores)\n");
}

static int cmd_inspect(int argc, char **argv) {
    if (argc != 1) {
        fprintf(stderr, "usage: kandinsky inspect MODEL_DIR_OR_FILE\n");
        return 2;
    }
    kd_ctx_params p = kd_ctx_params_default();
    p.n_threads = 1;
    kd_ctx *ctx;
    kd_status s = kd_ctx_create(&p, &ctx);
    if (s != KD_OK) {
        fprintf(stderr, "kandinsky: cannot create context: %s\n", kd_status_str(s));
        return 1;
    }
    s = kd_inspect(ctx, argv[0], stdout);
    if (s != KD_OK) fprintf(stderr, "kandinsky: %s\n", kd_ctx_last_error(ctx));
    kd_ctx_free(ctx);
    return s == KD_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kandinsky %s\n", kd_version());
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    fprintf(stderr, "kandinsky: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
