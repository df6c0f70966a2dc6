//! Render text (a `ds01 top --once --plain` frame) as a terminal-like PNG, for the
//! README's screenshot: `frame_png OUT.png < frame.txt`. Needs a monospace
//! TrueType font (DejaVu Sans Mono, Debian's fonts-dejavu-core; `DS01_MONO_FONT`
//! overrides the path).

use plotters::prelude::*;
use plotters::style::FontStyle;
use std::io::Read;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: frame_png OUT.png < text")?;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let path = std::env::var("DS01_MONO_FONT").unwrap_or_else(|_| FONT.to_string());
    let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
    plotters::style::register_font("monospace", FontStyle::Normal, bytes)
        .map_err(|_| format!("{path} is not a usable TrueType font"))?;
    let lines: Vec<&str> = text.lines().collect();
    let cols = lines.iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
    let (cw, ch) = (9u32, 19u32);
    let (w, h) = (cols * cw + 24, lines.len() as u32 * ch + 24);
    let root = BitMapBackend::new(&out, (w, h)).into_drawing_area();
    root.fill(&RGBColor(30, 30, 30))?;
    for (i, line) in lines.iter().enumerate() {
        // The header and the column titles stand out, as in the terminal.
        let color = match i {
            0 => RGBColor(255, 255, 255),
            1 => RGBColor(120, 200, 255),
            _ => RGBColor(220, 220, 220),
        };
        let style = ("monospace", 15).into_font().color(&color);
        root.draw(&Text::new(
            line.to_string(),
            (12, 12 + i as i32 * ch as i32),
            style,
        ))?;
    }
    root.present()?;
    Ok(())
}
