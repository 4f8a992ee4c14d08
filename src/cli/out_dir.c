#include "args.h"
#include "commands.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int cli_check_out_dir(const char *cmd, const char *dir)
{
    struct stat st;
    if (!dir || !*dir) return cli_fail(cmd, "--out needs a directory");
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) return cli_fail(cmd, "--out %s exists and is not a directory", dir);
    return 0;
}

int cli_mkdirs(const char *cmd, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return cli_fail(cmd, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        cli_fail(cmd, "cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}
