//! `timeline.png`: one dot per operation at (invoke time, latency), coloured by outcome, over
//! translucent bands for the fault windows. Rasterised here and encoded with the `png` crate;
//! labels use the built-in [`font`](super::font).
//!
//! Layout, top to bottom: the legend (outcomes, then the fault kinds present), the latency
//! axis title, the plot, the time axis labels and title.

use std::collections::BTreeMap;

use super::font;
use crate::history::{Event, FaultKind, Outcome};

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [255, 255, 255];
const GRID: Rgb = [228, 228, 228];
const AXIS: Rgb = [0, 0, 0];
const TEXT: Rgb = [25, 25, 25];
const OK: Rgb = [30, 150, 40];
const FAILED: Rgb = [215, 35, 35];
const UNKNOWN: Rgb = [255, 140, 0];
/// Opacity of a fault band: light enough that grid lines and dots stay readable through it.
const BAND_ALPHA: f32 = 0.3;

/// The latency axis starts here: faster operations are drawn on its floor.
const FLOOR_MS: f64 = 1.0;

fn outcome_colour(outcome: &Outcome) -> Rgb {
    match outcome {
        Outcome::Ok => OK,
        Outcome::Failed => FAILED,
        Outcome::Unknown => UNKNOWN,
    }
}

/// Chosen to stay distinct from the outcome colours once blended over white.
fn fault_colour(kind: FaultKind) -> Rgb {
    match kind {
        FaultKind::KillLeader => [148, 103, 189],
        FaultKind::KillReplica => [31, 119, 180],
        FaultKind::Pause => [140, 86, 75],
        FaultKind::PartitionMinority => [23, 190, 207],
        FaultKind::PartitionMajority => [227, 119, 194],
        FaultKind::KillWorker => [188, 189, 34],
    }
}

/// A `width`×`height` RGB PNG of the run's operations: x is the invoke time in seconds from
/// the start of the run, y the latency (complete − invoke) on a log scale from 1 ms (faster
/// operations sit on the floor) to a round value above the slowest. Ok operations are green,
/// failed red, unknown orange, drawn in that order so the rarer outcomes stay on top. Each
/// fault's window (start to end) is a translucent band in its kind's colour. Sizes of zero are
/// taken as one.
pub fn timeline_png(events: &[Event], width: u32, height: u32) -> Vec<u8> {
    let (width, height) = (width.max(1), height.max(1));
    let chart = Chart::new(events, width, height);
    let mut canvas = Canvas::new(width, height);
    chart.draw(&mut canvas, events);
    canvas.encode()
}

/// What a legend entry shows before its label.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Dot(Rgb),
    Band(Rgb),
}

/// Where everything goes. Pixel coordinates are `i64` so that arithmetic near the edges
/// cannot underflow; the canvas clips.
#[derive(Debug)]
struct Chart {
    /// Font pixels per image pixel, 2 on large images.
    scale: u32,
    /// The plot area, inclusive.
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
    /// Margin inside the plot area around the data, so that dots on an edge are whole.
    inset: i64,
    /// Seconds at the right edge, a multiple of `t_step`.
    t_max: f64,
    t_step: f64,
    /// Milliseconds at the top edge.
    y_top_ms: f64,
    /// Legend entries with their top-left corners.
    legend: Vec<(i64, i64, Mark, String)>,
    /// Where the latency axis title goes.
    y_title: (i64, i64),
}

impl Chart {
    fn new(events: &[Event], width: u32, height: u32) -> Chart {
        let scale = if width >= 1000 && height >= 560 { 2 } else { 1 };
        let s = i64::from(scale);
        let char_h = i64::from(font::GLYPH_HEIGHT) * s;
        let line_h = char_h + 4 * s;
        let pad = 8 * s;
        let gap = 3 * s;
        let tick = 4 * s;
        let (width, height) = (i64::from(width), i64::from(height));

        let mut t_end_us = 0u64;
        let mut max_latency_us = 0u64;
        let mut outcomes = [0usize; 3];
        let mut kinds: BTreeMap<FaultKind, usize> = BTreeMap::new();
        for event in events {
            match event {
                Event::Op(op) => {
                    t_end_us = t_end_us.max(op.invoke);
                    max_latency_us = max_latency_us.max(op.complete.saturating_sub(op.invoke));
                    outcomes[match op.outcome {
                        Outcome::Ok => 0,
                        Outcome::Failed => 1,
                        Outcome::Unknown => 2,
                    }] += 1;
                }
                Event::Fault(fault) => {
                    t_end_us = t_end_us.max(fault.start).max(fault.end);
                    *kinds.entry(fault.kind).or_default() += 1;
                }
            }
        }
        let t_end = (t_end_us as f64 / 1e6).max(1.0);
        let y_top_ms = nice_ceil((max_latency_us as f64 / 1e3).max(10.0));

        let widest_y_label = y_ticks(y_top_ms)
            .iter()
            .map(|(v, _)| font::text_width(&format_ms(*v), scale))
            .max()
            .unwrap_or(0);
        let left = pad + i64::from(widest_y_label) + gap + tick;
        let right = width - 1 - pad - 3 * i64::from(font::ADVANCE) * s;

        let mut entries = vec![
            (Mark::Dot(OK), format!("ok ({})", outcomes[0])),
            (Mark::Dot(FAILED), format!("failed ({})", outcomes[1])),
            (Mark::Dot(UNKNOWN), format!("unknown ({})", outcomes[2])),
        ];
        for (kind, count) in &kinds {
            entries.push((Mark::Band(fault_colour(*kind)), format!("{} ({count})", kind.name())));
        }
        let swatch = i64::from(font::GLYPH_HEIGHT) * s;
        let spacing = 3 * i64::from(font::ADVANCE) * s;
        let mut legend = Vec::new();
        let (mut x, mut y) = (left, pad);
        for (mark, label) in entries {
            let w = swatch + 2 * gap + i64::from(font::text_width(&label, scale));
            if x > left && x + w > width - pad {
                x = left;
                y += line_h;
            }
            legend.push((x, y, mark, label));
            x += w + spacing;
        }

        let y_title = (pad, y + line_h + gap);
        // Leave half a label's height above the top tick label.
        let top = y_title.1 + char_h + gap + char_h / 2 + s;
        let bottom = height - 1 - (pad + char_h + gap + char_h + gap + tick + 1);

        // Keep the plot at least 2×2 so the scales stay finite; the canvas clips the rest.
        let right = right.max(left + 1);
        let bottom = bottom.max(top + 1);

        let plot_w = right - left + 1;
        let max_ticks = (plot_w / (8 * i64::from(font::ADVANCE) * s)).clamp(2, 10);
        let t_step = nice_ceil(t_end / max_ticks as f64);
        let t_max = ((t_end / t_step) - 1e-9).ceil().max(1.0) * t_step;

        let inset = dot_radius(scale) + 1;
        Chart { scale, left, top, right, bottom, inset, t_max, t_step, y_top_ms, legend, y_title }
    }

    /// The column of a time in seconds.
    fn x(&self, seconds: f64) -> i64 {
        let frac = (seconds / self.t_max).clamp(0.0, 1.0);
        let span = (self.right - self.left - 2 * self.inset).max(0);
        self.left + self.inset + (frac * span as f64).round() as i64
    }

    /// The row of a latency in milliseconds.
    fn y(&self, ms: f64) -> i64 {
        let ms = ms.clamp(FLOOR_MS, self.y_top_ms);
        let frac = (ms / FLOOR_MS).ln() / (self.y_top_ms / FLOOR_MS).ln();
        let span = (self.bottom - self.top - 2 * self.inset).max(0);
        self.bottom - self.inset - (frac * span as f64).round() as i64
    }

    fn draw(&self, canvas: &mut Canvas, events: &[Event]) {
        let s = i64::from(self.scale);
        let tick = 4 * s;
        let gap = 3 * s;
        let char_h = i64::from(font::GLYPH_HEIGHT) * s;

        // Which latency ticks get a label (and a grid line): decades first, then the top, then
        // 2s and 5s, each only where it does not crowd one already placed.
        let ticks = y_ticks(self.y_top_ms);
        let mut labelled: Vec<(f64, i64)> = Vec::new();
        let mut candidates: Vec<f64> =
            ticks.iter().filter(|(_, decade)| *decade).map(|(v, _)| *v).collect();
        candidates.push(self.y_top_ms);
        candidates.extend(
            ticks
                .iter()
                .filter(|(v, _)| leading_digit(*v) == 2 || leading_digit(*v) == 5)
                .map(|(v, _)| *v),
        );
        for v in candidates {
            let row = self.y(v);
            if labelled.iter().all(|(_, r)| (r - row).abs() >= char_h + 2 * s) {
                labelled.push((v, row));
            }
        }
        let x_ticks: Vec<f64> = (0..=(self.t_max / self.t_step).round() as i64)
            .map(|i| i as f64 * self.t_step)
            .collect();

        for (_, row) in &labelled {
            canvas.fill(self.left, *row, self.right, *row, GRID);
        }
        for t in &x_ticks {
            let col = self.x(*t);
            canvas.fill(col, self.top, col, self.bottom, GRID);
        }

        for event in events {
            if let Event::Fault(fault) = event {
                let x0 = self.x(fault.start as f64 / 1e6);
                let x1 = self.x(fault.end as f64 / 1e6).max(x0);
                canvas.blend_rect(
                    x0,
                    self.top,
                    x1,
                    self.bottom,
                    fault_colour(fault.kind),
                    BAND_ALPHA,
                );
            }
        }

        let radius = dot_radius(self.scale);
        for outcome in [Outcome::Ok, Outcome::Unknown, Outcome::Failed] {
            for event in events {
                let Event::Op(op) = event else { continue };
                if op.outcome != outcome {
                    continue;
                }
                let latency_ms = op.complete.saturating_sub(op.invoke) as f64 / 1e3;
                let (cx, cy) = (self.x(op.invoke as f64 / 1e6), self.y(latency_ms));
                canvas.dot(
                    cx,
                    cy,
                    radius,
                    outcome_colour(&outcome),
                    (self.left, self.top, self.right, self.bottom),
                );
            }
        }

        // Axes just outside the plot area, ticks pointing out.
        canvas.fill(self.left - 1, self.top, self.left - 1, self.bottom + 1, AXIS);
        canvas.fill(self.left - 1, self.bottom + 1, self.right, self.bottom + 1, AXIS);
        for (v, decade) in &ticks {
            let row = self.y(*v);
            let len = if *decade { tick } else { tick / 2 };
            canvas.fill(self.left - 1 - len, row, self.left - 2, row, AXIS);
        }
        for (v, row) in &labelled {
            let label = format_ms(*v);
            let w = i64::from(font::text_width(&label, self.scale));
            canvas.text(&label, self.left - 1 - tick - gap - w, row - char_h / 2, self.scale, TEXT);
        }
        let decimals = decimals_for(self.t_step);
        for t in &x_ticks {
            let col = self.x(*t);
            canvas.fill(col, self.bottom + 2, col, self.bottom + 1 + tick, AXIS);
            let label = format!("{t:.decimals$}");
            let w = i64::from(font::text_width(&label, self.scale));
            canvas.text(&label, col - w / 2, self.bottom + 2 + tick + gap, self.scale, TEXT);
        }

        let x_title = "time since start (s)";
        let w = i64::from(font::text_width(x_title, self.scale));
        let x_title_y = self.bottom + 2 + tick + gap + char_h + gap;
        canvas.text(x_title, (self.left + self.right) / 2 - w / 2, x_title_y, self.scale, TEXT);
        canvas.text("latency (ms, log scale)", self.y_title.0, self.y_title.1, self.scale, TEXT);

        let swatch = i64::from(font::GLYPH_HEIGHT) * s;
        for (x, y, mark, label) in &self.legend {
            match mark {
                Mark::Dot(colour) => {
                    let r = swatch / 2;
                    canvas.dot(x + r, y + r, r, *colour, (*x, *y, x + swatch, y + swatch));
                }
                Mark::Band(colour) => {
                    canvas.blend_rect(*x, *y, x + swatch - 1, y + swatch - 1, *colour, BAND_ALPHA);
                    canvas.outline(*x, *y, x + swatch - 1, y + swatch - 1, *colour);
                }
            }
            canvas.text(label, x + swatch + 2 * gap, *y, self.scale, TEXT);
        }
    }
}

fn dot_radius(scale: u32) -> i64 {
    1 + i64::from(scale)
}

/// Tick values on the latency axis from 1 ms to `top`: every 1–9 × 10^k, with whether it is a
/// decade.
fn y_ticks(top: f64) -> Vec<(f64, bool)> {
    let mut ticks = Vec::new();
    let mut decade = FLOOR_MS;
    while decade <= top * (1.0 + 1e-9) {
        for m in 1..=9 {
            let v = decade * f64::from(m);
            if v > top * (1.0 + 1e-9) {
                break;
            }
            ticks.push((v, m == 1));
        }
        decade *= 10.0;
    }
    ticks
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (> 0).
fn nice_ceil(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

fn leading_digit(v: f64) -> u32 {
    (v / 10f64.powf(v.log10().floor())).round() as u32
}

/// Decimals needed to print multiples of `step` (a 1, 2 or 5 × 10^k) exactly.
fn decimals_for(step: f64) -> usize {
    (-step.log10() - 1e-9).ceil().max(0.0) as usize
}

fn format_ms(v: f64) -> String {
    format!("{}", v.round() as u64)
}

/// An RGB image being drawn; everything outside it is clipped.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        let pixels = BACKGROUND.repeat(width as usize * height as usize);
        Canvas { width, height, pixels }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside =
            (0..i64::from(self.width)).contains(&x) && (0..i64::from(self.height)).contains(&y);
        inside.then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&colour);
        }
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), inclusive.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        for y in y0.max(0)..=y1.min(i64::from(self.height) - 1) {
            for x in x0.max(0)..=x1.min(i64::from(self.width) - 1) {
                self.set(x, y, colour);
            }
        }
    }

    fn outline(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        self.fill(x0, y0, x1, y0, colour);
        self.fill(x0, y1, x1, y1, colour);
        self.fill(x0, y0, x0, y1, colour);
        self.fill(x1, y0, x1, y1, colour);
    }

    fn blend_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb, alpha: f32) {
        for y in y0.max(0)..=y1.min(i64::from(self.height) - 1) {
            for x in x0.max(0)..=x1.min(i64::from(self.width) - 1) {
                if let Some(i) = self.index(x, y) {
                    let under = [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]];
                    self.pixels[i..i + 3].copy_from_slice(&mix(under, colour, alpha));
                }
            }
        }
    }

    /// A filled disc, clipped to `clip` (x0, y0, x1, y1 inclusive) as well as to the image.
    fn dot(&mut self, cx: i64, cy: i64, r: i64, colour: Rgb, clip: (i64, i64, i64, i64)) {
        let (x0, y0, x1, y1) = clip;
        for dy in -r..=r {
            for dx in -r..=r {
                let (x, y) = (cx + dx, cy + dy);
                // `+ r` rounds the disc so a radius-2 dot is not a diamond.
                if dx * dx + dy * dy <= r * r + r
                    && (x0..=x1).contains(&x)
                    && (y0..=y1).contains(&y)
                {
                    self.set(x, y, colour);
                }
            }
        }
    }

    fn text(&mut self, text: &str, x: i64, y: i64, scale: u32, colour: Rgb) {
        font::render(text, x, y, scale, |px, py| self.set(px, py, colour));
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Writing into memory an image whose buffer matches its header cannot fail.
        let mut writer = encoder.write_header().expect("PNG header into memory");
        writer.write_image_data(&self.pixels).expect("PNG data into memory");
        writer.finish().expect("PNG end into memory");
        out
    }
}

/// `over` at opacity `alpha` on top of `under`.
fn mix(under: Rgb, over: Rgb, alpha: f32) -> Rgb {
    let channel =
        |u: u8, o: u8| (f32::from(u) + (f32::from(o) - f32::from(u)) * alpha).round() as u8;
    [channel(under[0], over[0]), channel(under[1], over[1]), channel(under[2], over[2])]
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::history::Call;
    use crate::report::tests::{fault, op, read, write};

    /// Decodes a PNG: width, height and RGB pixels.
    pub(crate) fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(png);
        let mut reader = decoder.read_info().expect("a valid PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("one frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn pixel(pixels: &[u8], width: u32, x: i64, y: i64) -> Rgb {
        let i = (y as usize * width as usize + x as usize) * 3;
        [pixels[i], pixels[i + 1], pixels[i + 2]]
    }

    /// Operations over 10 s with latencies of 2 to 100 ms, none invoked during the one fault,
    /// a kill-leader from 4 s to 6 s.
    fn history() -> Vec<Event> {
        let mut slow_unknown = op(3, write("a", "3"), 3_000, 3_100, Outcome::Unknown);
        slow_unknown.error = Some("timeout".into());
        vec![
            Event::Op(op(1, write("a", "1"), 1_000, 1_005, Outcome::Ok)),
            Event::Op(op(2, read("a"), 2_000, 2_020, Outcome::Failed)),
            Event::Op(slow_unknown),
            Event::Fault(fault(FaultKind::KillLeader, 4_000, 6_000)),
            Event::Op(op(4, Call::Deploy { service: "s".into() }, 9_000, 9_003, Outcome::Ok)),
            Event::Op(op(5, read("a"), 10_000, 10_002, Outcome::Ok)),
        ]
    }

    #[test]
    fn the_png_has_the_requested_size() {
        for (width, height) in [(400, 300), (1600, 900), (1, 1), (37, 12)] {
            let (w, h, pixels) = decode(&timeline_png(&history(), width, height));
            assert_eq!((w, h), (width, height));
            assert_eq!(pixels.len(), width as usize * height as usize * 3);
        }
        let (w, h, _) = decode(&timeline_png(&[], 0, 0));
        assert_eq!((w, h), (1, 1));
    }

    #[test]
    fn dots_sit_at_invoke_time_and_latency_in_their_outcome_colour() {
        for (width, height) in [(400, 300), (1600, 900)] {
            let events = history();
            let chart = Chart::new(&events, width, height);
            let (_, _, pixels) = decode(&timeline_png(&events, width, height));
            let at = |seconds: f64, ms: f64| pixel(&pixels, width, chart.x(seconds), chart.y(ms));
            assert_eq!(at(1.0, 5.0), OK);
            assert_eq!(at(2.0, 20.0), FAILED);
            assert_eq!(at(3.0, 100.0), UNKNOWN);
            assert_eq!(at(9.0, 3.0), OK);
            // The axes span the run and the slowest operation.
            assert_eq!(chart.t_max, 10.0);
            assert_eq!(chart.y_top_ms, 100.0);
        }
    }

    #[test]
    fn fault_windows_are_shaded_and_nothing_else_is() {
        let (width, height) = (400, 300);
        let events = history();
        let chart = Chart::new(&events, width, height);
        let (_, _, pixels) = decode(&timeline_png(&events, width, height));
        let shade = mix(BACKGROUND, fault_colour(FaultKind::KillLeader), BAND_ALPHA);

        // 3 ms lies between grid lines, 4.5 s and 5.5 s between time ticks.
        let row = chart.y(3.0);
        assert_eq!(pixel(&pixels, width, chart.x(4.5), row), shade);
        assert_eq!(pixel(&pixels, width, chart.x(5.5), row), shade);
        assert_eq!(pixel(&pixels, width, chart.x(3.5), row), BACKGROUND);
        assert_eq!(pixel(&pixels, width, chart.x(7.5), row), BACKGROUND);

        // The whole height of the fault's middle column is shaded (plain or over a grid line),
        // and no pixel of a column outside it is.
        let over_grid = mix(GRID, fault_colour(FaultKind::KillLeader), BAND_ALPHA);
        let column = |t: f64| -> Vec<Rgb> {
            (chart.top..=chart.bottom).map(|y| pixel(&pixels, width, chart.x(t), y)).collect()
        };
        assert!(column(4.5).iter().all(|p| *p == shade || *p == over_grid));
        assert!(column(7.5).iter().all(|p| *p != shade && *p != over_grid));
    }

    #[test]
    fn labels_and_legend_are_drawn_outside_the_plot() {
        let (width, height) = (400, 300);
        let events = history();
        let chart = Chart::new(&events, width, height);
        let (_, _, pixels) = decode(&timeline_png(&events, width, height));
        let count = |x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb| {
            let mut n = 0;
            for y in y0..=y1 {
                for x in x0..=x1 {
                    n += usize::from(pixel(&pixels, width, x, y) == colour);
                }
            }
            n
        };
        let (w, h) = (i64::from(width), i64::from(height));
        // Latency labels left of the axis, time labels and title below it.
        assert!(count(0, chart.top - 5, chart.left - 6, chart.bottom, TEXT) > 20);
        assert!(count(chart.left, chart.bottom + 6, w - 1, h - 1, TEXT) > 50);
        // The legend above the plot: outcome dots and the fault kind's swatch.
        let shade = mix(BACKGROUND, fault_colour(FaultKind::KillLeader), BAND_ALPHA);
        for colour in [OK, FAILED, UNKNOWN, shade] {
            assert!(count(0, 0, w - 1, chart.top - 1, colour) > 4, "{colour:?} not in the legend");
        }
        assert_eq!(chart.legend.len(), 4);
        assert_eq!(chart.legend[3].3, "kill-leader (1)");
        assert_eq!(chart.legend[0].3, "ok (3)");
    }

    #[test]
    fn every_fault_kind_gets_its_own_colour() {
        let kinds = [
            FaultKind::KillLeader,
            FaultKind::KillReplica,
            FaultKind::Pause,
            FaultKind::PartitionMinority,
            FaultKind::PartitionMajority,
            FaultKind::KillWorker,
        ];
        let mut colours: Vec<Rgb> = kinds.iter().map(|k| fault_colour(*k)).collect();
        colours.extend([OK, FAILED, UNKNOWN, BACKGROUND, GRID]);
        let mut unique = colours.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), colours.len());
    }

    #[test]
    fn an_empty_or_degenerate_history_still_draws() {
        let (w, h, _) = decode(&timeline_png(&[], 640, 480));
        assert_eq!((w, h), (640, 480));
        // A single instant operation and a fault that ends before it starts.
        let mut backwards = fault(FaultKind::Pause, 500, 400);
        backwards.end = 0;
        let events = vec![Event::Op(op(1, read("a"), 0, 0, Outcome::Ok)), Event::Fault(backwards)];
        let (w, h, _) = decode(&timeline_png(&events, 300, 200));
        assert_eq!((w, h), (300, 200));
    }

    #[test]
    fn axis_scales_are_round() {
        assert_eq!(nice_ceil(10.0), 10.0);
        assert_eq!(nice_ceil(11.0), 20.0);
        assert_eq!(nice_ceil(250.0), 500.0);
        assert_eq!(nice_ceil(5001.0), 10_000.0);
        assert_eq!(nice_ceil(0.3), 0.5);
        assert_eq!(decimals_for(5.0), 0);
        assert_eq!(decimals_for(0.5), 1);
        assert_eq!(decimals_for(0.1), 1);
        assert_eq!(decimals_for(0.05), 2);
        let ticks = y_ticks(20.0);
        assert_eq!(ticks.first(), Some(&(1.0, true)));
        assert_eq!(ticks.last(), Some(&(20.0, false)));
        assert_eq!(ticks.iter().filter(|(_, decade)| *decade).count(), 2);
        assert_eq!(leading_digit(500.0), 5);
    }
}
