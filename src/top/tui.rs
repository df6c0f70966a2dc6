//! The full-screen view (ratatui on crossterm): a header with host totals and the
//! ds01 units, one row per user (memory bar against MemoryMax), containers under
//! expanded users, and the keys on the last line. Narrow terminals (80 columns)
//! drop the least important columns rather than wrap.

use super::{Frame, HEADERS, Reader, SortKey, View, cells, short_bytes as short};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub struct Opts {
    pub interval: Duration,
    pub color: bool,
}

/// Interactive state beyond the [`View`].
struct Ui {
    selected: usize,
    /// The first table row on screen: only the rows on screen are formatted (a
    /// frame of 1,000 users would otherwise format 1,000 rows to show 40).
    offset: usize,
    /// Typing a filter: the text so far.
    editing: Option<String>,
}

/// Column indexes shown at a given width, most important first kept.
fn columns(width: u16, gpus: bool) -> Vec<usize> {
    // USER MEMORY CPU PSI TASKS OOM always; GPU on a GPU host; GROUP, CTRS,
    // THROT when there is room.
    let mut cols = vec![0, 2, 3, 5, 6, 8];
    let extra = if gpus {
        cols.push(9);
        width_of(9) + 1
    } else {
        0
    };
    if width >= 91 + extra {
        cols.push(1);
    }
    if width >= 97 + extra {
        cols.push(7);
    }
    if width >= 104 + extra {
        cols.push(4);
    }
    cols.sort_unstable();
    cols
}

fn width_of(col: usize) -> u16 {
    [12, 10, 21, 12, 6, 14, 10, 5, 6, 14][col]
}

fn bar(frac: f64, n: usize) -> String {
    let filled = (frac.clamp(0.0, 1.0) * n as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "·".repeat(n - filled))
}

/// Table rows on screen in a terminal `height` lines high (less the header, the
/// table's head and the keys line).
fn table_height(height: u16) -> usize {
    usize::from(height.saturating_sub(3)).max(1)
}

/// Move the window of table rows on screen just enough to show the selected one.
fn scroll(rows: &[super::UserRow], view: &View, ui: &mut Ui, height: usize) {
    let sel = row_index(rows, view, ui.selected);
    if sel < ui.offset {
        ui.offset = sel;
    } else if sel >= ui.offset + height {
        ui.offset = sel + 1 - height;
    }
}

/// The users with a table row (theirs or a container's) in the window.
fn on_screen(
    rows: &[super::UserRow],
    view: &View,
    window: std::ops::Range<usize>,
) -> HashSet<String> {
    let mut users = HashSet::new();
    let mut at = 0;
    for r in rows {
        let end = at
            + 1
            + if view.expanded.contains(&r.user) {
                r.containers.len()
            } else {
                0
            };
        if at < window.end && end > window.start && r.others.is_none() {
            users.insert(r.user.clone());
        }
        at = end;
    }
    users
}

fn draw(
    term: &mut ratatui::DefaultTerminal,
    f: &Frame,
    rows: &[super::UserRow],
    view: &View,
    ui: &Ui,
    opts: &Opts,
) -> std::io::Result<()> {
    term.draw(|fr| {
        let area = fr.area();
        let [top, mid, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let style = |s: Style| if opts.color { s } else { Style::default() };
        fr.render_widget(
            Paragraph::new(super::header(f, view)).style(style(Style::default().bold())),
            top,
        );
        let cols = columns(area.width, f.gpus.is_some());
        let head =
            Row::new(cols.iter().map(|c| HEADERS[*c])).style(style(Style::default().reversed()));
        // The window of table rows on screen (see `scroll`).
        let height = table_height(area.height);
        let sel = row_index(rows, view, ui.selected);
        let shown = ui.offset..ui.offset + height;
        let mut table_rows = Vec::new();
        let mut at = 0;
        for r in rows {
            let subs = if view.expanded.contains(&r.user) {
                r.containers.len()
            } else {
                0
            };
            if at + subs < shown.start || at >= shown.end {
                at += 1 + subs;
                continue;
            }
            let mut c = cells(r);
            // Compact memory: a bar against MemoryMax, then used/max.
            c[2] = match (r.memory, r.memory_max) {
                (Some(m), Some(max)) if max > 0 => {
                    let frac = m as f64 / max as f64;
                    format!(
                        "{} {}/{} {:.0}%",
                        bar(frac, 5),
                        short(m),
                        short(max),
                        frac * 100.0
                    )
                }
                (Some(m), _) => format!("{}/-", short(m)),
                _ => "-".into(),
            };
            let hot = r
                .memory_max
                .zip(r.memory)
                .is_some_and(|(max, m)| max > 0 && m * 10 >= max * 9)
                || r.ooms_24h > 0;
            let row_style = if hot {
                style(Style::default().red())
            } else {
                Style::default()
            };
            if shown.contains(&at) {
                table_rows.push(Row::new(cols.iter().map(|i| c[*i].clone())).style(row_style));
            }
            at += 1;
            if view.expanded.contains(&r.user) {
                for k in &r.containers {
                    at += 1;
                    if !shown.contains(&(at - 1)) {
                        continue;
                    }
                    let mut sub: [String; super::COLUMNS] = Default::default();
                    sub[0] = format!(" └ {}", k.name);
                    sub[2] = k.memory.map_or("-".into(), short);
                    sub[3] = k.cpu_pct.map_or("-".into(), |p| format!("{p:.0}%"));
                    table_rows.push(
                        Row::new(cols.iter().map(|i| sub[*i].clone()))
                            .style(style(Style::default().add_modifier(Modifier::DIM))),
                    );
                }
            }
        }
        let widths: Vec<Constraint> = cols
            .iter()
            .map(|c| Constraint::Length(width_of(*c)))
            .collect();
        let table = Table::new(table_rows, widths)
            .header(head)
            .row_highlight_style(style(Style::default().reversed()))
            .column_spacing(1);
        let mut st = TableState::default();
        st.select(Some(sel - ui.offset));
        fr.render_stateful_widget(table, mid, &mut st);
        let keys = match &ui.editing {
            Some(t) => format!("filter: {t}█  (Enter apply, Esc cancel)"),
            None => {
                "q quit  ↑↓ select  Enter expand  s sort  1-7 sort by column  / filter  c clear"
                    .into()
            }
        };
        fr.render_widget(Paragraph::new(Line::from(keys)), bottom);
    })?;
    Ok(())
}

/// The table row of the `selected`-th user (containers of expanded users come
/// between users).
fn row_index(rows: &[super::UserRow], view: &View, selected: usize) -> usize {
    let mut i = 0;
    for (n, r) in rows.iter().enumerate() {
        if n == selected {
            return i;
        }
        i += 1;
        if view.expanded.contains(&r.user) {
            i += r.containers.len();
        }
    }
    i.saturating_sub(1)
}

/// Run until `q`. The terminal is restored on every way out, panics included
/// (ratatui's init installs the hook).
pub fn run(reader: &mut Reader, view: &mut View, opts: &Opts) -> std::io::Result<()> {
    let mut term = ratatui::try_init()?;
    let result = event_loop(&mut term, reader, view, opts);
    ratatui::restore();
    result
}

fn event_loop(
    term: &mut ratatui::DefaultTerminal,
    reader: &mut Reader,
    view: &mut View,
    opts: &Opts,
) -> std::io::Result<()> {
    let mut ui = Ui {
        selected: 0,
        offset: 0,
        editing: None,
    };
    let mut frame = Frame::default();
    // The first frame at once, the second soon after (CPU needs two).
    let mut next = Instant::now();
    let mut first = true;
    loop {
        // What the view needs of everyone, as it is now (a sort key just
        // pressed reads a frame at once): pressure when an admin sorts by it,
        // tasks when sorted by them or summed in the "(N others)" row;
        // containers for the expanded users.
        let everyone = view.viewer.admin && view.sort == SortKey::Pressure;
        if Instant::now() >= next {
            if everyone {
                reader.shown = None;
            }
            reader.tasks_of_all = !view.viewer.admin || view.sort == SortKey::Tasks;
            reader.detail = Some(view.expanded.clone());
            frame = reader.read(Instant::now());
            let every = match first {
                true => opts.interval.min(Duration::from_millis(500)),
                false => opts.interval,
            };
            (next, first) = (Instant::now() + every, false);
        }
        let mut rows = view.rows(&frame);
        ui.selected = ui.selected.min(rows.len().saturating_sub(1));
        let height = table_height(term.size()?.height);
        scroll(&rows, view, &mut ui, height);
        // Every column is read for the rows on screen, the rest as above. Rows
        // that came on screen since the frame was read are completed now.
        let users = on_screen(&rows, view, ui.offset..ui.offset + height);
        if reader.complete(&mut frame, &users, Instant::now()) {
            rows = view.rows(&frame);
        }
        reader.shown = (!everyone).then_some(users);
        draw(term, &frame, &rows, view, &ui, opts)?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    if let Some(text) = ui.editing.as_mut() {
                        match k.code {
                            KeyCode::Enter => {
                                view.filter = ui.editing.take().unwrap_or_default();
                                ui.selected = 0;
                            }
                            KeyCode::Esc => ui.editing = None,
                            KeyCode::Backspace => {
                                text.pop();
                            }
                            KeyCode::Char(c) => text.push(c),
                            _ => {}
                        }
                        continue;
                    }
                    let n = rows.len();
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(());
                        }
                        KeyCode::Up | KeyCode::Char('k') => {
                            ui.selected = ui.selected.saturating_sub(1)
                        }
                        KeyCode::Down | KeyCode::Char('j') => {
                            ui.selected = (ui.selected + 1).min(n.saturating_sub(1))
                        }
                        KeyCode::Enter | KeyCode::Char(' ') => {
                            if let Some(r) = rows.get(ui.selected)
                                && r.others.is_none()
                                && !view.expanded.remove(&r.user)
                            {
                                view.expanded.insert(r.user.clone());
                                // Read their containers now, not at the next tick.
                                next = Instant::now();
                            }
                        }
                        KeyCode::Char('s') => {
                            let i = SortKey::ALL
                                .iter()
                                .position(|s| *s == view.sort)
                                .unwrap_or(0);
                            view.sort = SortKey::ALL[(i + 1) % SortKey::ALL.len()];
                            next = Instant::now();
                        }
                        KeyCode::Char(d @ '1'..='7') => {
                            view.sort = SortKey::ALL[(d as u8 - b'1') as usize];
                            next = Instant::now();
                        }
                        KeyCode::Char('/') => ui.editing = Some(view.filter.clone()),
                        KeyCode::Char('c') => view.filter.clear(),
                        _ => {}
                    }
                }
                // A resize is redrawn at the top of the loop.
                _ => {}
            }
        }
    }
}
