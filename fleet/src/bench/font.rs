//! A 5×7 bitmap font for the plot's labels: a copy of grove-chaos's `report/font.rs` (private
//! there; this crate does not link the chaos harness). Digits, lowercase letters (uppercase is drawn
//! as lowercase) and the few symbols axis labels need. Shapes follow the HD44780 LCD font.
//! Each glyph is seven rows from the top; bit 4 of a row is its leftmost pixel.

pub(crate) const GLYPH_WIDTH: u32 = 5;
pub(crate) const GLYPH_HEIGHT: u32 = 7;
/// Horizontal distance from one character to the next (one blank column between them).
pub(crate) const ADVANCE: u32 = GLYPH_WIDTH + 1;

/// Drawn for a character the font lacks, so that a gap is visibly a missing glyph.
#[rustfmt::skip]
static UNKNOWN: [u8; 7] = [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111];

#[rustfmt::skip]
static GLYPHS: &[(char, [u8; 7])] = &[
    (' ', [0, 0, 0, 0, 0, 0, 0]),
    ('0', [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110]),
    ('1', [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('2', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111]),
    ('3', [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110]),
    ('4', [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010]),
    ('5', [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110]),
    ('6', [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110]),
    ('7', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000]),
    ('8', [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110]),
    ('9', [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100]),
    ('a', [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111]),
    ('b', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110]),
    ('c', [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110]),
    ('d', [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111]),
    ('e', [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110]),
    ('f', [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000]),
    ('g', [0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('h', [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
    ('i', [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('j', [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('k', [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010]),
    ('l', [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('m', [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001]),
    ('n', [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001]),
    ('o', [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('p', [0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000]),
    ('q', [0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001]),
    ('r', [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000]),
    ('s', [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110]),
    ('t', [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110]),
    ('u', [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101]),
    ('v', [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100]),
    ('w', [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010]),
    ('x', [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001]),
    ('y', [0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110]),
    ('z', [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111]),
    ('.', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100]),
    (',', [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000]),
    (':', [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000]),
    ('-', [0b00000, 0b00000, 0b00000, 0b01110, 0b00000, 0b00000, 0b00000]),
    ('_', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111]),
    ('+', [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000]),
    ('=', [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000]),
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000]),
    ('/', [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000]),
    ('%', [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011]),
    ('<', [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010]),
    ('>', [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000]),
    ('#', [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010]),
];

/// The rows of `c`'s glyph.
pub(crate) fn glyph(c: char) -> &'static [u8; 7] {
    let c = c.to_ascii_lowercase();
    GLYPHS
        .iter()
        .find(|(g, _)| *g == c)
        .map_or(&UNKNOWN, |(_, rows)| rows)
}

/// Width in pixels of `text` drawn at `scale`, without the trailing blank column.
pub(crate) fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    (n * ADVANCE).saturating_sub(1) * scale
}

/// Calls `plot(x, y)` for every lit pixel of `text` with its top-left corner at (`x`, `y`),
/// each font pixel drawn as a `scale`×`scale` block.
pub(crate) fn render(text: &str, x: i64, y: i64, scale: u32, mut plot: impl FnMut(i64, i64)) {
    let s = i64::from(scale);
    for (i, c) in text.chars().enumerate() {
        let left = x + i as i64 * i64::from(ADVANCE) * s;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) == 0 {
                    continue;
                }
                for dy in 0..s {
                    for dx in 0..s {
                        plot(left + i64::from(col) * s + dx, y + row as i64 * s + dy);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_the_labels_use_has_a_glyph() {
        let needed = "0123456789abcdefghijklmnopqrstuvwxyz .,:-_+=()/%<>#";
        for c in needed.chars() {
            assert!(GLYPHS.iter().any(|(g, _)| *g == c), "no glyph for {c:?}");
        }
        assert!(std::ptr::eq(glyph('Q'), glyph('q')));
        assert!(std::ptr::eq(glyph('µ'), &UNKNOWN));
    }

    #[test]
    fn glyphs_fit_five_columns_and_are_unique() {
        for (c, rows) in GLYPHS {
            assert!(
                rows.iter().all(|r| *r < 1 << GLYPH_WIDTH),
                "{c:?} is wider than 5"
            );
            let same: Vec<char> = GLYPHS
                .iter()
                .filter(|(_, other)| other == rows)
                .map(|(g, _)| *g)
                .collect();
            assert_eq!(same, vec![*c], "glyphs {same:?} look the same");
        }
    }

    #[test]
    fn rendering_scales_each_font_pixel() {
        let mut lit = Vec::new();
        render("1", 10, 20, 2, |x, y| lit.push((x, y)));
        // The rows of "1" light 1, 2, 1, 1, 1, 1 and 3 pixels: 10, each drawn 2×2.
        assert_eq!(lit.len(), 10 * 4);
        // Top row of "1" is its third column: x = 10 + 2 × 2.
        assert!(lit.contains(&(14, 20)) && lit.contains(&(15, 21)));
        assert_eq!(text_width("10", 1), 11);
        assert_eq!(text_width("10", 2), 22);
        assert_eq!(text_width("", 2), 0);
    }
}
