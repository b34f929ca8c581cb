/* Shared by the command-line front end's files. */
#ifndef KD_CLI_SERVE_H
#define KD_CLI_SERVE_H

/* Default Hub repositories of the published pipelines. */
#define KD_CLI_DEFAULT_PRIOR "kandinsky-community/kandinsky-2-2-prior"
#define KD_CLI_DEFAULT_DECODER "kandinsky-community/kandinsky-2-2-decoder"
#define KD_CLI_DEFAULT_PRIOR21 "kandinsky-community/kandinsky-2-1-prior"
#define KD_CLI_DEFAULT_DECODER21 "kandinsky-community/kandinsky-2-1"
#define KD_CLI_DEFAULT_MODEL20 "sberbank-ai/Kandinsky_2.0"

/* `kandinsky serve ...` (serve.c): returns the exit code. */
int kd_cli_serve(int argc, char **argv);

#endif
