#include "table.h"

#include <string.h>

#include "text.h"

#define COLUMN_GAP 2

void table_start(table_col *cols, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cols[i].width = text_width(cols[i].title);
        cols[i].seen = 0;
    }
}

void table_measure(table_col *cols, size_t n, const char *const *cells)
{
    for (size_t i = 0; i < n; i++) {
        size_t w = text_width(cells[i]);
        if (w > 0) cols[i].seen = 1;
        if (cols[i].max_width && w > cols[i].max_width) w = cols[i].max_width;
        if (w > cols[i].width) cols[i].width = w;
    }
}

static int visible(const table_col *c) { return !c->optional || c->seen; }

static void pad(FILE *out, size_t n)
{
    while (n--) fputc(' ', out);
}

/* Blanks are owed lazily, so nothing is written after the last non-empty cell. */
static void print_cells(FILE *out, const char *indent, const table_col *cols, size_t n, const char *const *cells)
{
    size_t owed = 0;
    fputs(indent, out);
    for (size_t i = 0; i < n; i++) {
        if (!visible(&cols[i])) continue;
        size_t w = text_width(cells[i]);
        size_t fill = w < cols[i].width ? cols[i].width - w : 0;
        if (cells[i][0] != '\0') {
            pad(out, owed + (cols[i].right ? fill : 0));
            fputs(cells[i], out);
            owed = cols[i].right ? 0 : fill;
        } else {
            owed += cols[i].width;
        }
        owed += COLUMN_GAP;
    }
    fputc('\n', out);
}

void table_print_header(FILE *out, const char *indent, const table_col *cols, size_t n)
{
    const char *titles[32];
    if (n > sizeof titles / sizeof titles[0]) n = sizeof titles / sizeof titles[0];
    for (size_t i = 0; i < n; i++) titles[i] = cols[i].title;
    print_cells(out, indent, cols, n, titles);
}

void table_print_row(FILE *out, const char *indent, const table_col *cols, size_t n, const char *const *cells)
{
    print_cells(out, indent, cols, n, cells);
}
