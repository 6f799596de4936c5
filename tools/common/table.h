/*
 * table.h - aligned text columns for human-readable tool output.
 *
 * Two passes over the rows: table_measure() on every row, then
 * table_print_header() and table_print_row(). Cells are already escaped for
 * the terminal; widths count code points. Trailing blanks are never printed.
 */
#ifndef TOOLS_TABLE_H
#define TOOLS_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *title;
    int right;        /* right-align (numbers) */
    int optional;     /* hide the whole column when every cell is empty */
    size_t max_width; /* 0 = no cap; a longer cell overflows its row only */
    size_t width;     /* computed */
    int seen;         /* computed: some cell is non-empty */
} table_col;

void table_start(table_col *cols, size_t n);
void table_measure(table_col *cols, size_t n, const char *const *cells);
void table_print_header(FILE *out, const char *indent, const table_col *cols, size_t n);
void table_print_row(FILE *out, const char *indent, const table_col *cols, size_t n, const char *const *cells);

#endif /* TOOLS_TABLE_H */
