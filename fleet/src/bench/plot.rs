//! The PNG of cost per worker against fleet size: two panels (leader CPU per 1,000 workers;
//! resident memory per worker), fleet size on a log axis. Drawn with a small rasteriser and
//! the 5×7 font, encoded with the `png` crate, like grove-chaos's timeline.

use super::font;
use super::RunResult;

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [255, 255, 255];
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const BLUE: Rgb = [31, 119, 180];
const ORANGE: Rgb = [230, 110, 20];

/// One line of a panel: label, colour, points (fleet size, value).
struct Series {
    label: &'static str,
    colour: Rgb,
    points: Vec<(f64, f64)>,
}

/// The plot of `results` (one point per fleet size), `width` × `height` pixels.
pub fn cost_png(results: &[RunResult], width: u32, height: u32) -> Vec<u8> {
    let mut canvas = Canvas::new(width.max(200), height.max(120));
    let pts = |f: fn(&RunResult) -> f64| {
        results
            .iter()
            .map(|r| (r.workers as f64, f(r)))
            .collect::<Vec<_>>()
    };
    let width = canvas.width;
    let half = width / 2;
    let cpu = [
        Series {
            label: "cluster leader",
            colour: BLUE,
            points: pts(RunResult::cluster_cpu_per_1000),
        },
        Series {
            label: "root leader",
            colour: ORANGE,
            points: pts(RunResult::root_cpu_per_1000),
        },
    ];
    let rss = [
        Series {
            label: "cluster leader",
            colour: BLUE,
            points: pts(RunResult::cluster_rss_per_worker_kib),
        },
        Series {
            label: "all replicas",
            colour: ORANGE,
            points: pts(RunResult::tiers_rss_per_worker_kib),
        },
    ];
    panel(
        &mut canvas,
        0,
        half,
        "leader cpu % of a core per 1000 workers (idle)",
        &cpu,
    );
    panel(
        &mut canvas,
        half,
        width - half,
        "resident memory kib per worker",
        &rss,
    );
    canvas.encode()
}

fn panel(canvas: &mut Canvas, left: u32, width: u32, title: &str, series: &[Series]) {
    let scale = 2u32;
    let line_h = i64::from(font::GLYPH_HEIGHT * scale);
    let (x0, x1) = (i64::from(left) + 70, i64::from(left + width) - 20);
    let (y0, y1) = (30 + line_h, i64::from(canvas.height) - 50);
    canvas.text(title, i64::from(left) + 10, 10, scale, INK);

    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| *x > 0.0)
        .collect();
    let (mut lo, mut hi) = xs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| {
        (lo.min(x.log10()), hi.max(x.log10()))
    });
    if xs.is_empty() {
        (lo, hi) = (2.0, 4.0);
    }
    if hi - lo < 1.0 {
        let mid = (hi + lo) / 2.0;
        (lo, hi) = (mid - 0.5, mid + 0.5);
    }
    let (lo, hi) = (lo - 0.1, hi + 0.1);
    let top = nice_ceil(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.1,
    );
    let px =
        |x: f64| x0 + ((x.max(1e-9).log10() - lo) / (hi - lo) * (x1 - x0) as f64).round() as i64;
    let py = |y: f64| y1 - (y / top * (y1 - y0) as f64).round() as i64;

    // Grid and tick labels: five steps up, powers of ten across.
    for i in 0..=5 {
        let v = top * f64::from(i) / 5.0;
        let y = py(v);
        canvas.fill(x0, y, x1, y, GRID);
        let label = format_value(v, top);
        canvas.text(
            &label,
            x0 - 8 - i64::from(font::text_width(&label, scale)),
            y - line_h / 2,
            scale,
            INK,
        );
    }
    let mut decade = lo.ceil() as i32;
    while f64::from(decade) <= hi {
        let x = px(10f64.powi(decade));
        canvas.fill(x, y0, x, y1, GRID);
        let label = format!("{}", 10u64.pow(decade.max(0) as u32));
        canvas.text(
            &label,
            x - i64::from(font::text_width(&label, scale)) / 2,
            y1 + 8,
            scale,
            INK,
        );
        decade += 1;
    }
    canvas.text("workers", (x0 + x1) / 2 - 30, y1 + 12 + line_h, scale, INK);
    canvas.outline(x0, y0, x1, y1, INK);

    for (k, s) in series.iter().enumerate() {
        let mut prev: Option<(i64, i64)> = None;
        for &(x, y) in &s.points {
            let p = (px(x), py(y));
            if let Some(q) = prev {
                canvas.line(q, p, s.colour);
            }
            canvas.disc(p.0, p.1, 4, s.colour);
            prev = Some(p);
        }
        // Legend, top left inside the frame.
        let ly = y0 + 8 + k as i64 * (line_h + 6);
        canvas.fill(
            x0 + 10,
            ly + line_h / 2 - 2,
            x0 + 30,
            ly + line_h / 2 + 1,
            s.colour,
        );
        canvas.text(s.label, x0 + 38, ly, scale, INK);
    }
}

/// The next "round" number (1, 2, 5 × 10^k) at or above `v`; 1 for nothing to show.
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * base)
}

fn format_value(v: f64, top: f64) -> String {
    let decimals = if top >= 50.0 {
        0
    } else if top >= 5.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: BACKGROUND.repeat(width as usize * height as usize),
        }
    }

    fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if (0..i64::from(self.width)).contains(&x) && (0..i64::from(self.height)).contains(&y) {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&colour);
        }
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), inclusive.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
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

    /// A line three pixels thick (Bresenham, each point a 3×3 block).
    fn line(&mut self, from: (i64, i64), to: (i64, i64), colour: Rgb) {
        let (mut x, mut y) = from;
        let (dx, dy) = ((to.0 - x).abs(), -(to.1 - y).abs());
        let (sx, sy) = (if x < to.0 { 1 } else { -1 }, if y < to.1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.fill(x - 1, y - 1, x + 1, y + 1, colour);
            if (x, y) == to {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn disc(&mut self, cx: i64, cy: i64, r: i64, colour: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r + r {
                    self.set(cx + dx, cy + dy, colour);
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
        writer
            .write_image_data(&self.pixels)
            .expect("PNG data into memory");
        writer.finish().expect("PNG end into memory");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Cpu;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(png_bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn result(workers: usize, idle: f64) -> RunResult {
        RunResult {
            workers,
            root_cpu: Cpu {
                idle: idle / 4.0,
                deploy: 0.0,
            },
            cluster_leaders: vec!["cluster-1-1".into(), "cluster-2-1".into()],
            cluster_cpu: vec![Cpu { idle, deploy: 0.0 }; 2],
            rss_kib: vec![
                ("cluster-1-1".into(), 30_000),
                ("cluster-2-1".into(), 30_000),
                ("root-1".into(), 20_000),
            ],
            ..RunResult::default()
        }
    }

    #[test]
    fn draws_both_series_in_their_colours_at_the_requested_size() {
        let png = cost_png(
            &[result(100, 1.0), result(1000, 5.0), result(10_000, 40.0)],
            1000,
            400,
        );
        let (w, h, pixels) = decode(&png);
        assert_eq!((w, h), (1000, 400));
        let count = |c: Rgb| pixels.chunks(3).filter(|p| *p == c).count();
        assert!(count(BLUE) > 200, "cluster series drawn");
        assert!(count(ORANGE) > 200, "root / all-replicas series drawn");
        assert!(count(INK) > 500, "frame and labels drawn");
    }

    #[test]
    fn a_single_point_or_nothing_still_draws() {
        let (w, _, _) = decode(&cost_png(&[result(100, 1.0)], 600, 300));
        assert_eq!(w, 600);
        let (w, _, _) = decode(&cost_png(&[], 600, 300));
        assert_eq!(w, 600);
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(11.0), 20.0);
        assert_eq!(nice_ceil(0.042), 0.05);
    }
}
