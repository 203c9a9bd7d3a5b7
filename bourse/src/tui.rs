//! The live terminal views' two sinks, shared by `bourse demo`
//! ([`crate::demo_run`]) and `bourse feed` ([`crate::md_cli`]): a view is
//! ONE render function (`Fn(Rect, &mut Buffer)`, drawn with `ratatui`
//! widgets) and goes either to a terminal ([`Screen`], crossterm backend,
//! redrawn in place, following resizes) or to plain text ([`plain_text`],
//! for redirected output and tests).
//!
//! Invariants: plain text never contains an escape sequence and never a
//! trailing space or blank line; the screen neither enters raw mode nor
//! the alternate screen (Ctrl-C stays the terminal's, and the last frame
//! stays on screen above whatever is printed after it); the cursor hidden
//! while drawing is shown again when the [`Screen`] is dropped.

use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::Terminal;
use std::io::Write;

/// A terminal redrawn in place with a view; see the module doc.
pub struct Screen<W: Write> {
    terminal: Terminal<CrosstermBackend<W>>,
    /// Rows the last frame used (the cursor goes below them at the end).
    rows_used: u16,
}

impl<W: Write> std::fmt::Debug for Screen<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("rows_used", &self.rows_used)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Screen<W> {
    /// Takes the whole terminal `out` is connected to and clears it.
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
        terminal.clear()?;
        Ok(Screen {
            terminal,
            rows_used: 0,
        })
    }

    /// Draws one frame: `view` fills the terminal's current size (a
    /// resize since the last frame clears and redraws everything); only
    /// the cells that changed are written.
    pub fn draw(&mut self, view: impl FnOnce(Rect, &mut Buffer)) -> std::io::Result<()> {
        let done = self.terminal.draw(|f| {
            let area = f.area();
            view(area, f.buffer_mut());
        })?;
        self.rows_used = rows_used(done.buffer);
        Ok(())
    }
}

impl<W: Write> Drop for Screen<W> {
    fn drop(&mut self) {
        // Leave the cursor visible, on the line below the last frame, so
        // what is printed next follows the view instead of overwriting it.
        let _ = self
            .terminal
            .set_cursor_position(Position::new(0, self.rows_used));
        let _ = self.terminal.show_cursor();
        let _ = self.terminal.backend_mut().flush();
    }
}

/// The view rendered off screen, `width` columns by `height` rows, as
/// plain lines: trailing spaces and trailing blank lines removed.
pub fn plain_text(width: u16, height: u16, view: impl FnOnce(Rect, &mut Buffer)) -> String {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    view(area, &mut buf);
    let mut lines: Vec<String> = (0..height)
        .map(|y| {
            let row: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
            row.trim_end().to_string()
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// 1 + the last row holding anything but blanks (0 for an empty buffer).
fn rows_used(buf: &Buffer) -> u16 {
    let area = buf.area;
    (area.top()..area.bottom())
        .rev()
        .find(|&y| (area.left()..area.right()).any(|x| buf[(x, y)].symbol() != " "))
        .map_or(0, |y| y + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::widgets::{Paragraph, Widget};

    #[test]
    fn plain_text_trims_trailing_blanks_and_keeps_inner_ones() {
        let s = plain_text(20, 6, |area, buf| {
            Paragraph::new("a  b\n\nc").render(area, buf);
        });
        assert_eq!(s, "a  b\n\nc\n");
    }

    #[test]
    fn rows_used_counts_down_to_the_last_non_blank_row() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 3));
        assert_eq!(rows_used(&buf), 0);
        buf.set_string(1, 1, "x", ratatui::style::Style::default());
        assert_eq!(rows_used(&buf), 2);
    }
}
