//! Perceptual hash of a frame (dHash, 64 bits) and the Hamming distance between two.
//!
//! The review policy uses it to recognise a scene it has just sent for review: a static
//! camera that keeps seeing the same uncertain scene must not send it a thousand times.
//! Unlike a sha256 of the bytes, the hash barely changes when the same scene is
//! re-encoded, slightly brightened, rescaled or carries sensor noise.
//!
//! dHash ("difference hash", Neal Krawetz): convert to grayscale, shrink to 9x8 cells,
//! and for each of the 8 rows set one bit per adjacent pair of cells: 1 where the right
//! cell is brighter than the left one. It captures the gradient structure of the scene,
//! which a global change of brightness or contrast leaves intact.
//!
//! The shrink is a plain box average computed here in one pass over the pixels (no
//! intermediate grayscale image, no resampling filter from a library whose algorithm
//! may change between versions), so a hash depends on this file alone. Luma uses the
//! ITU-R BT.601 weights, as PIL's `convert("L")` does in the usual dHash recipes.
//!
//! Bit layout: row-major from the most significant bit (bit 63 compares cells (0,0) and
//! (1,0) of the top row; bit 0 compares cells (7,7) and (8,7) of the bottom row).

use image::RgbImage;

/// Cells across: 9 columns give 8 comparisons per row.
const COLUMNS: u32 = 9;
/// Cells down.
const ROWS: u32 = 8;

/// The 64-bit difference hash of an image.
///
/// Any size works, even images smaller than 9x8 (cells then share pixels); an empty
/// image (0 pixels wide or high) hashes to 0 rather than panicking.
pub fn dhash(image: &RgbImage) -> u64 {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return 0;
    }
    let cells = cell_means(image);
    let mut hash = 0u64;
    for row in 0..ROWS as usize {
        for col in 0..(COLUMNS - 1) as usize {
            let left = cells[row * COLUMNS as usize + col];
            let right = cells[row * COLUMNS as usize + col + 1];
            hash = (hash << 1) | u64::from(right > left);
        }
    }
    hash
}

/// Number of bits in which two hashes differ (0 = same scene, 64 = opposite).
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Mean luma (scaled by 1000) of each of the 9x8 cells, row-major.
fn cell_means(image: &RgbImage) -> [f64; (COLUMNS * ROWS) as usize] {
    let (width, height) = image.dimensions();
    // Cell `i` spans pixels [i*len/n, (i+1)*len/n), widened to at least one pixel so
    // that no cell is empty when the image is smaller than the grid.
    let span = |i: u32, n: u32, len: u32| -> (u32, u32) {
        let start = (u64::from(i) * u64::from(len) / u64::from(n)) as u32;
        let end = (u64::from(i + 1) * u64::from(len) / u64::from(n)) as u32;
        (start, end.max(start + 1))
    };
    let columns: Vec<(usize, usize)> = (0..COLUMNS)
        .map(|col| {
            let (x0, x1) = span(col, COLUMNS, width);
            (x0 as usize * 3, x1 as usize * 3)
        })
        .collect();
    let stride = width as usize * 3;
    let mut means = [0f64; (COLUMNS * ROWS) as usize];
    for row in 0..ROWS {
        let (y0, y1) = span(row, ROWS, height);
        let mut sums = [0u64; COLUMNS as usize];
        for y in y0 as usize..y1 as usize {
            let line = &image.as_raw()[y * stride..(y + 1) * stride];
            for (sum, &(start, end)) in sums.iter_mut().zip(&columns) {
                *sum += line[start..end]
                    .chunks_exact(3)
                    .map(|p| 299 * u64::from(p[0]) + 587 * u64::from(p[1]) + 114 * u64::from(p[2]))
                    .sum::<u64>();
            }
        }
        for (col, (sum, &(start, end))) in sums.iter().zip(&columns).enumerate() {
            let count = ((end - start) / 3) as u64 * u64::from(y1 - y0);
            means[row as usize * COLUMNS as usize + col] = *sum as f64 / count as f64;
        }
    }
    means
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::imageops::{self, FilterType};
    use std::path::PathBuf;

    fn sample(name: &str) -> RgbImage {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/samples")
            .join(name);
        image::open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
            .to_rgb8()
    }

    fn reencoded_as_jpeg(image: &RgbImage, quality: u8) -> RgbImage {
        let mut bytes = Vec::new();
        JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode_image(image)
            .expect("encode jpeg");
        image::load_from_memory(&bytes)
            .expect("decode jpeg")
            .to_rgb8()
    }

    const SAMPLES: [&str; 6] = [
        "astronaut.jpg",
        "camera_gray.png",
        "chelsea.jpg",
        "coffee.png",
        "hubble.jpg",
        "rocket.jpg",
    ];

    /// At most this many bits differ for the same photo after a harmless change: the
    /// policy's default near-duplicate threshold (measured here: 0 or 1 bit).
    fn same_scene_max() -> u32 {
        crate::policy::default_max_hamming()
    }
    /// At least this many bits differ between two different photos (measured here:
    /// 24 or more).
    const DIFFERENT_SCENE_MIN: u32 = 16;

    #[test]
    fn hamming_counts_differing_bits() {
        assert_eq!(hamming(0, 0), 0);
        assert_eq!(hamming(0b1011, 0b0001), 2);
        assert_eq!(hamming(0, u64::MAX), 64);
        assert_eq!(hamming(0x8000_0000_0000_0001, 0), 2);
    }

    #[test]
    fn brightness_rising_to_the_right_sets_every_bit() {
        let image = RgbImage::from_fn(90, 40, |x, _| image::Rgb([x as u8 * 2; 3]));
        assert_eq!(dhash(&image), u64::MAX);
    }

    #[test]
    fn brightness_falling_to_the_right_clears_every_bit() {
        let image = RgbImage::from_fn(90, 40, |x, _| image::Rgb([255 - x as u8 * 2; 3]));
        assert_eq!(dhash(&image), 0);
    }

    #[test]
    fn flat_image_hashes_to_zero() {
        let image = RgbImage::from_pixel(64, 48, image::Rgb([120, 30, 200]));
        assert_eq!(dhash(&image), 0);
    }

    #[test]
    fn top_row_is_the_most_significant_byte() {
        // Only the top eighth rises to the right; the rest is flat.
        let image = RgbImage::from_fn(90, 80, |x, y| {
            image::Rgb([if y < 10 { x as u8 * 2 } else { 0 }; 3])
        });
        assert_eq!(dhash(&image), 0xFF00_0000_0000_0000);
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        assert_eq!(dhash(&RgbImage::new(0, 0)), 0);
        assert_eq!(dhash(&RgbImage::new(0, 5)), 0);
        assert_eq!(dhash(&RgbImage::new(1, 1)), 0);
        let two_by_one = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255; 3]));
        // Grid columns 0..=4 see pixel 0 and columns 5..=8 pixel 1 (start = i*2/9): one
        // rise per row, between columns 4 and 5, which is the fifth bit of the row.
        let row = 0b0000_1000u64;
        let expected = (0..8).fold(0u64, |hash, _| (hash << 8) | row);
        assert_eq!(dhash(&two_by_one), expected);
    }

    #[test]
    fn same_photo_reencoded_as_low_quality_jpeg_is_near() {
        for name in SAMPLES {
            let original = sample(name);
            let distance = hamming(dhash(&original), dhash(&reencoded_as_jpeg(&original, 40)));
            assert!(distance <= same_scene_max(), "{name}: distance {distance}");
        }
    }

    #[test]
    fn same_photo_brightened_is_near() {
        for name in SAMPLES {
            let original = sample(name);
            let distance = hamming(dhash(&original), dhash(&imageops::brighten(&original, 25)));
            assert!(distance <= same_scene_max(), "{name}: distance {distance}");
        }
    }

    #[test]
    fn same_photo_rescaled_is_near() {
        for name in SAMPLES {
            let original = sample(name);
            let (w, h) = original.dimensions();
            let smaller = imageops::resize(&original, w * 3 / 4, h * 3 / 4, FilterType::Triangle);
            let distance = hamming(dhash(&original), dhash(&smaller));
            assert!(distance <= same_scene_max(), "{name}: distance {distance}");
        }
    }

    #[test]
    fn same_photo_with_sensor_noise_is_near() {
        for name in SAMPLES {
            let original = sample(name);
            let mut noisy = original.clone();
            // A fixed linear congruential sequence: +-10 levels on every channel.
            let mut state = 12345u32;
            for value in noisy.iter_mut() {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let delta = (state >> 16) % 21;
                *value = (i32::from(*value) + delta as i32 - 10).clamp(0, 255) as u8;
            }
            let distance = hamming(dhash(&original), dhash(&noisy));
            assert!(distance <= same_scene_max(), "{name}: distance {distance}");
        }
    }

    #[test]
    fn same_photo_brightened_rescaled_and_reencoded_is_near() {
        for name in SAMPLES {
            let original = sample(name);
            let (w, h) = original.dimensions();
            let edited = imageops::resize(
                &imageops::brighten(&original, 15),
                w / 2,
                h / 2,
                FilterType::Triangle,
            );
            let distance = hamming(dhash(&original), dhash(&reencoded_as_jpeg(&edited, 60)));
            assert!(distance <= same_scene_max(), "{name}: distance {distance}");
        }
    }

    #[test]
    fn different_photos_are_far_apart() {
        let hashes: Vec<(&str, u64)> = SAMPLES.iter().map(|n| (*n, dhash(&sample(n)))).collect();
        for (i, (a, hash_a)) in hashes.iter().enumerate() {
            for (b, hash_b) in &hashes[i + 1..] {
                let distance = hamming(*hash_a, *hash_b);
                assert!(
                    distance >= DIFFERENT_SCENE_MIN,
                    "{a} vs {b}: distance {distance}"
                );
            }
        }
    }
}
