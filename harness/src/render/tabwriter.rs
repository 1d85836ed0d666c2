//! A port of Go's `text/tabwriter` as istioctl configures it
//! (`Init(w, minwidth 0, tabwidth 8, padding 5, padchar ' ', flags 0)`).
//!
//! Semantics kept from Go: cells are terminated by `\t` or `\v`; the text after
//! the last tab of a line is not part of any column (so the last column is
//! never padded); a column block is a run of consecutive lines that have a cell
//! in that column, and its width is the widest cell + padding; cell width is
//! the number of runes (`utf8.RuneCount`), not bytes; a line with a single cell
//! (no tab) ends all column blocks; `\f` forces a flush.

/// One buffered cell.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// Size in bytes.
    size: usize,
    /// Width in runes.
    width: usize,
    /// Terminated by a horizontal tab.
    htab: bool,
}

/// Go's `tabwriter.Writer` with istioctl's settings, writing into a `String`.
#[derive(Debug)]
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    padchar: char,
    out: String,
    buf: String,
    pos: usize,
    cell: Cell,
    lines: Vec<Vec<Cell>>,
    widths: Vec<usize>,
}

impl Default for TabWriter {
    fn default() -> Self {
        Self::istioctl()
    }
}

impl TabWriter {
    /// `new(tabwriter.Writer).Init(w, 0, 8, 5, ' ', 0)`.
    pub fn istioctl() -> Self {
        Self::new(0, 5, ' ')
    }

    pub fn new(minwidth: usize, padding: usize, padchar: char) -> Self {
        let mut w = TabWriter {
            minwidth,
            padding,
            padchar,
            out: String::new(),
            buf: String::new(),
            pos: 0,
            cell: Cell::default(),
            lines: Vec::new(),
            widths: Vec::new(),
        };
        w.reset();
        w
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.cell = Cell::default();
        self.lines.clear();
        self.widths.clear();
        self.lines.push(Vec::new());
    }

    /// Writes text (like `fmt.Fprint(w, ...)`).
    pub fn write_str(&mut self, text: &str) {
        let mut start = 0;
        for (i, ch) in text.char_indices() {
            if matches!(ch, '\t' | '\u{b}' | '\n' | '\u{c}') {
                self.append(&text[start..i]);
                start = i + ch.len_utf8();
                let ncells = self.terminate_cell(ch == '\t');
                if ch == '\n' || ch == '\u{c}' {
                    self.lines.push(Vec::new());
                    if ch == '\u{c}' || ncells == 1 {
                        // A line with a single cell does not affect later
                        // formatting: Go flushes here.
                        self.flush_buffered();
                    }
                }
            }
        }
        self.append(&text[start..]);
    }

    /// Writes one line made of `cells` joined by tabs (`fmt.Fprintln(w, strings.Join(cells, "\t"))`).
    pub fn write_row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let line = cells
            .iter()
            .map(|c| c.as_ref())
            .collect::<Vec<_>>()
            .join("\t");
        self.write_str(&line);
        self.write_str("\n");
    }

    fn append(&mut self, text: &str) {
        self.buf.push_str(text);
        self.cell.size += text.len();
        self.cell.width += text.chars().count();
    }

    fn terminate_cell(&mut self, htab: bool) -> usize {
        self.cell.htab = htab;
        let cell = std::mem::take(&mut self.cell);
        let line = self.lines.last_mut();
        match line {
            Some(line) => {
                line.push(cell);
                line.len()
            }
            None => {
                self.lines.push(vec![cell]);
                1
            }
        }
    }

    fn flush_buffered(&mut self) {
        if self.cell.size > 0 {
            self.terminate_cell(false);
        }
        let n = self.lines.len();
        self.format(0, 0, n);
        self.reset();
    }

    /// Flushes and returns everything written (`w.Flush()`).
    pub fn finish(mut self) -> String {
        self.flush_buffered();
        self.out
    }

    fn format(&mut self, pos0: usize, line0: usize, line1: usize) -> usize {
        let mut pos = pos0;
        let mut line0 = line0;
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // This line has a cell in this column: a column block begins.
            pos = self.write_lines(pos, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                width = width.max(line[column].width + self.padding);
                this += 1;
            }
            self.widths.push(width);
            pos = self.format(pos, line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(pos, line0, line1)
    }

    fn write_lines(&mut self, pos0: usize, line0: usize, line1: usize) -> usize {
        let mut pos = pos0;
        for i in line0..line1 {
            let ncells = self.lines[i].len();
            for j in 0..ncells {
                let c = self.lines[i][j];
                if c.size > 0 {
                    let text = &self.buf[pos..pos + c.size];
                    self.out.push_str(text);
                    pos += c.size;
                }
                if j < self.widths.len() {
                    let pad = self.widths[j].saturating_sub(c.width);
                    self.out.extend(std::iter::repeat_n(self.padchar, pad));
                }
            }
            if i + 1 == self.lines.len() {
                // The last buffered line has no newline yet.
                let rest = &self.buf[pos..pos + self.cell.size];
                self.out.push_str(rest);
                pos += self.cell.size;
            } else {
                self.out.push('\n');
            }
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> String {
        let mut w = TabWriter::istioctl();
        for r in rows {
            w.write_row(r);
        }
        w.finish()
    }

    #[test]
    fn pads_to_widest_plus_five_and_leaves_last_column() {
        let out = table(&[
            &["NAME", "CDS", "VERSION"],
            &["a-long-name", "SYNCED", "1.12.1"],
        ]);
        assert_eq!(
            out,
            "NAME            CDS        VERSION\na-long-name     SYNCED     1.12.1\n"
        );
    }

    #[test]
    fn empty_cells_are_padded() {
        let out = table(&[&["A", "B", "C"], &["x", "", "z"]]);
        assert_eq!(out, "A     B     C\nx           z\n");
    }

    #[test]
    fn width_counts_runes_not_bytes() {
        let out = table(&[&["NAME", "X"], &["ñandú-é.ns", "1"], &["日本.ns", "2"]]);
        assert_eq!(
            out,
            "NAME           X\nñandú-é.ns     1\n日本.ns          2\n"
        );
    }

    #[test]
    fn a_line_without_tabs_ends_the_column_block() {
        let mut w = TabWriter::istioctl();
        w.write_str("a\tb\nlonger-cell\tc\nno tabs here\nx\ty\n");
        assert_eq!(
            w.finish(),
            "a               b\nlonger-cell     c\nno tabs here\nx     y\n"
        );
    }

    #[test]
    fn text_without_trailing_newline_is_flushed() {
        let mut w = TabWriter::istioctl();
        w.write_str("a\tb\nc\td");
        assert_eq!(w.finish(), "a     b\nc     d");
    }

    #[test]
    fn header_only() {
        assert_eq!(
            table(&[&["NAME", "CLUSTER", "VERSION"]]),
            "NAME     CLUSTER     VERSION\n"
        );
        assert_eq!(TabWriter::istioctl().finish(), "");
    }

    #[test]
    fn ragged_lines_use_nested_blocks() {
        // Go: a column block spans only consecutive lines that have that column.
        let mut w = TabWriter::istioctl();
        w.write_str("a\tbbbbbbbb\tc\nd\te\nf\tg\th\n");
        assert_eq!(w.finish(), "a     bbbbbbbb     c\nd     e\nf     g     h\n");
    }
}
