//! `ds01 stats`: the resource-stats history as a table, a summary or a plot.

use super::{CliError, CliResult};
use crate::stats::{self, Filter};
use crate::units::format_human_bytes;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Stats log [default: $DS01_STATS_LOG, else /var/log/ds01/resource-stats.log]
    #[arg(long, env = "DS01_STATS_LOG", default_value = stats::DEFAULT_LOG, value_name = "PATH")]
    pub file: PathBuf,
    /// Only these users (repeatable).
    #[arg(long)]
    pub user: Vec<String>,
    /// Only this group.
    #[arg(long)]
    pub group: Option<String>,
    /// From this time (same forms as `ds01 events`: RFC 3339, a date, today, '2 hours ago', 7d…).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Print the original lines.
    #[arg(long, conflicts_with_all = ["summary", "plot"])]
    pub json: bool,
    /// Per user over the range: peak and mean memory %, time above 90 %, peak PSI, OOM kills.
    #[arg(long)]
    pub summary: bool,
    /// Plot memory vs limit and PSI per user to FILE.svg, FILE.png, or `-` (SVG on stdout).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

pub fn run(a: StatsArgs) -> CliResult {
    let (since, until) = super::time_range(a.since.as_deref(), a.until.as_deref())?;
    let f = Filter {
        users: a.user.clone(),
        group: a.group.clone(),
        since,
        until,
    };
    let cannot =
        |e: std::io::Error| CliError::Runtime(format!("cannot read {}: {e}", a.file.display()));
    if a.summary && !a.json && a.plot.is_none() {
        // One streaming pass: no samples kept.
        let (rows, malformed) = stats::load_summary(&a.file, &f).map_err(cannot)?;
        let result = print_summary(&rows);
        super::events_cmd::warn_malformed(malformed);
        return result;
    }
    let loaded = stats::load(&a.file, &f, a.json).map_err(cannot)?;
    let result = output(&a, &loaded);
    super::events_cmd::warn_malformed(loaded.malformed);
    result
}

fn color_on() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn hot(color: bool, pct: f64, text: String) -> String {
    if color && pct >= 90.0 {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text
    }
}

fn psi(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.2}"))
}

fn print_summary(rows: &[stats::Summary]) -> CliResult {
    if rows.is_empty() {
        outln!("no samples");
        return Ok(());
    }
    let color = color_on();
    let gpu = rows.iter().any(|s| s.gpu_hours.is_some());
    let gpu_head = if gpu {
        format!(" {:>7} {:>9} {:>9}", "GPU-H", "GPU UTIL", "PEAK GMEM")
    } else {
        String::new()
    };
    outln!(
        "{:<20} {:<12} {:>8} {:>9} {:>9} {:>11} {:>9} {:>9} {:>5}{gpu_head}",
        "USER",
        "GROUP",
        "SAMPLES",
        "PEAK MEM%",
        "MEAN MEM%",
        "TIME >=90%",
        "PSI SOME",
        "PSI FULL",
        "OOMS"
    );
    for s in rows {
        let gpu_cells = if gpu {
            format!(
                " {:>7} {:>9} {:>9}",
                s.gpu_hours.map_or("-".into(), |h| format!("{h:.1}")),
                s.mean_gpu_util.map_or("-".into(), |u| format!("{u:.0}%")),
                s.peak_gpu_memory
                    .map_or("-".into(), crate::gpu::report::gib)
            )
        } else {
            String::new()
        };
        let line = format!(
            "{:<20} {:<12} {:>8} {:>9.2} {:>9.2} {:>11} {:>9} {:>9} {:>5}{gpu_cells}",
            s.user,
            s.group,
            s.samples,
            s.peak_pct,
            s.mean_pct,
            duration(s.secs_above_90),
            psi(s.peak_psi_some),
            psi(s.peak_psi_full),
            s.oom_kills
        );
        outln!("{}", hot(color, s.peak_pct, line));
    }
    Ok(())
}

fn output(a: &StatsArgs, loaded: &stats::Loaded) -> CliResult {
    if a.json {
        for l in &loaded.lines {
            outln!("{l}");
        }
        return Ok(());
    }
    if let Some(p) = &a.plot {
        let err = |e: crate::stats_plot::PlotError| CliError::Runtime(e.to_string());
        if p.as_os_str() == "-" {
            out!("{}", crate::stats_plot::svg(&loaded.samples).map_err(err)?);
        } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")) {
            crate::stats_plot::png(&loaded.samples, p).map_err(err)?;
            outln!("wrote {}", p.display());
        } else {
            let svg = crate::stats_plot::svg(&loaded.samples).map_err(err)?;
            std::fs::write(p, svg)
                .map_err(|e| CliError::Runtime(format!("{}: {e}", p.display())))?;
            outln!("wrote {}", p.display());
        }
        return Ok(());
    }
    let color = color_on();
    let rows = stats::latest(&loaded.samples);
    if rows.is_empty() {
        outln!("no samples");
        return Ok(());
    }
    outln!(
        "{:<20} {:<12} {:>27} {:>13} {:>9} {:>9} {:>5}  AT (UTC)",
        "USER",
        "GROUP",
        "MEMORY (USED / LIMIT)",
        "TASKS",
        "PSI MEM",
        "PSI CPU",
        "OOMS"
    );
    for s in rows {
        let mem = format!(
            "{} / {} {:>5.1}%",
            format_human_bytes(s.memory_current),
            s.memory_max.map_or("-".into(), format_human_bytes),
            s.memory_pct
        );
        let tasks = format!(
            "{} / {}",
            s.pids_current,
            s.pids_max.map_or("-".into(), |m| m.to_string())
        );
        let line = format!(
            "{:<20} {:<12} {:>27} {:>13} {:>9} {:>9} {:>5}  {}",
            s.user,
            s.group,
            mem,
            tasks,
            psi(s.psi_memory_some),
            psi(s.psi_cpu_some),
            s.oom_kill_count,
            s.ts.strftime("%Y-%m-%d %H:%M")
        );
        outln!("{}", hot(color, s.memory_pct, line));
    }
    Ok(())
}

fn duration(secs: i64) -> String {
    match secs {
        0 => "0".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
