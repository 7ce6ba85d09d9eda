//! `plot`: draws series of a TSV (a header line, then numbers; `-` for a missing value) as a
//! PNG of stacked panels sharing the x axis, one panel per `--panel "title:col,col"`. The soak
//! draws its per-minute table with it, so its curves can be seen, not only read.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use hookstream_core::tool::UsageError;

/// `hookstream-testbed plot`.
#[derive(clap::Args)]
pub(crate) struct PlotArgs {
    /// The TSV to read.
    #[arg(long)]
    tsv: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    out: PathBuf,
    /// The column on the x axis.
    #[arg(long)]
    x: String,
    /// A panel: its title, a colon, the columns it draws (`"RSS MB:ingest,dispatcher"`).
    #[arg(long = "panel", required = true)]
    panels: Vec<String>,
    /// The title over the panels.
    #[arg(long, default_value = "")]
    title: String,
    /// A TrueType font for the text.
    #[arg(long, default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    font: PathBuf,
}

/// One panel: a title and the columns it draws.
struct Panel {
    title: String,
    columns: Vec<String>,
}

fn parse_panel(spec: &str) -> Result<Panel, UsageError> {
    let (title, columns) = spec
        .split_once(':')
        .ok_or_else(|| UsageError(format!("--panel {spec:?}: expected \"title:col,col\"")))?;
    let columns: Vec<String> =
        columns.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect();
    if columns.is_empty() {
        return Err(UsageError(format!("--panel {spec:?} names no column")));
    }
    Ok(Panel { title: title.to_owned(), columns })
}

/// The TSV's columns by name; a cell that is not a number is `None`.
fn read_columns(text: &str) -> Result<HashMap<String, Vec<Option<f64>>>, UsageError> {
    let mut lines = text.lines();
    let header: Vec<&str> =
        lines.next().ok_or_else(|| UsageError("the TSV is empty".into()))?.split('\t').collect();
    let mut columns: HashMap<String, Vec<Option<f64>>> =
        header.iter().map(|h| (h.to_string(), Vec::new())).collect();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        for (i, name) in header.iter().enumerate() {
            let value = cells.get(i).and_then(|c| c.trim().replace(',', "").parse::<f64>().ok());
            if let Some(col) = columns.get_mut(*name) {
                col.push(value.filter(|v| v.is_finite()));
            }
        }
    }
    Ok(columns)
}

pub(crate) async fn run(args: PlotArgs) -> anyhow::Result<()> {
    let panels = args.panels.iter().map(|p| parse_panel(p)).collect::<Result<Vec<_>, _>>()?;
    let text = std::fs::read_to_string(&args.tsv)
        .with_context(|| format!("cannot read {}", args.tsv.display()))?;
    let columns = read_columns(&text)?;
    let column = |name: &str| {
        columns.get(name).ok_or_else(|| UsageError(format!("the TSV has no column {name:?}")))
    };
    let xs = column(&args.x)?;
    for p in &panels {
        for c in &p.columns {
            column(c)?;
        }
    }
    let font = std::fs::read(&args.font).with_context(|| {
        format!("cannot read the font {} (apt package fonts-dejavu-core)", args.font.display())
    })?;
    // plotters keeps registered fonts for the process's life.
    register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType font", args.font.display()))?;

    let height = 60 + 260 * panels.len() as u32;
    let root = BitMapBackend::new(&args.out, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&args.title, ("sans-serif", 24))?;
    let areas = root.split_evenly((panels.len(), 1));
    let x_max = xs.iter().flatten().fold(1.0_f64, |m, v| m.max(*v));
    for (panel, area) in panels.iter().zip(&areas) {
        let series: Vec<(&String, Vec<(f64, f64)>)> = panel
            .columns
            .iter()
            .map(|c| {
                let ys = &columns[c];
                let points = xs.iter().zip(ys).filter_map(|(x, y)| Some(((*x)?, (*y)?))).collect();
                (c, points)
            })
            .collect();
        let y_max = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart.configure_mesh().x_desc(args.x.as_str()).label_style(("sans-serif", 13)).draw()?;
        for (i, (name, points)) in series.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present().with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panel_is_a_title_and_its_columns() {
        let p = parse_panel("RSS MB: ingest, dispatcher").expect("panel");
        assert_eq!(p.title, "RSS MB");
        assert_eq!(p.columns, ["ingest", "dispatcher"]);
        assert!(parse_panel("no colon").is_err());
        assert!(parse_panel("empty:").is_err());
    }

    #[test]
    fn cells_that_are_not_numbers_are_gaps() {
        let cols = read_columns("minute\tp99\n1\t7.5\n2\t-\n3\t1,204\n").expect("columns");
        assert_eq!(cols["minute"], [Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(cols["p99"], [Some(7.5), None, Some(1204.0)]);
    }
}
