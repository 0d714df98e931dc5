/* An MCP stdio tool server in C (wasi-libc), to show servers in any
 * language that targets WASI run unchanged. One tool, `upper`, upper-cases
 * `text`. JSON handling is deliberately minimal: it reads the fields the
 * MCP client sends and escapes what it writes. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies the raw JSON value after "key": (number or string, unescaped) into out. */
static int field(const char *line, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ') p++;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p && *p != '"' && n + 1 < cap) {
            if (*p == '\\' && p[1]) p++;
            out[n++] = *p++;
        }
    } else {
        while (*p && *p != ',' && *p != '}' && n + 1 < cap) out[n++] = *p++;
    }
    out[n] = 0;
    return 1;
}

static void print_escaped(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
}

int main(void) {
    static char line[1 << 16], id[64], method[64], text[1 << 15];
    while (fgets(line, sizeof line, stdin)) {
        if (!field(line, "id", id, sizeof id)) continue; /* notification */
        field(line, "method", method, sizeof method);
        if (!strcmp(method, "initialize")) {
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"upper\",\"version\":\"0.1.0\"}}}\n", id);
        } else if (!strcmp(method, "tools/list")) {
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"upper\",\"description\":\"Upper-case text (a C server)\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}]}}\n", id);
        } else if (!strcmp(method, "tools/call")) {
            if (!field(line, "text", text, sizeof text)) {
                printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32602,\"message\":\"`text` is required\"}}\n", id);
            } else {
                for (char *c = text; *c; c++) *c = (char)toupper((unsigned char)*c);
                printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"", id);
                print_escaped(text);
                printf("\"}],\"isError\":false}}\n");
            }
        } else {
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32601,\"message\":\"method not found\"}}\n", id);
        }
        fflush(stdout);
    }
    return 0;
}
