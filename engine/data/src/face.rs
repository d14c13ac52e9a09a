//! A drawn face: a 68-point landmark template (iBUG order), FACS action-unit
//! motions as landmark displacements, and a renderer that turns landmarks
//! into a shaded image.
//!
//! Written by hand because the generator needs sub-pixel control over each
//! facial region at micro-expression amplitudes; no crate draws faces from
//! landmarks. Everything here is pure arithmetic on `f32`, so the same seed
//! gives the same pixels on any x86-64 machine.

use std::f32::consts::PI;

/// 68 landmarks, normalised to the unit square, face centred at (0.5, 0.5).
pub type Landmarks = [[f32; 2]; 68];

/// The neutral template in iBUG-68 order.
pub fn template() -> Landmarks {
    let mut p = [[0f32; 2]; 68];
    // Jaw 0..16: an arc from the left temple through the chin.
    for (i, q) in p.iter_mut().enumerate().take(17) {
        let th = PI - i as f32 * PI / 16.0;
        *q = [0.5 + 0.34 * th.cos(), 0.42 + 0.44 * th.sin()];
    }
    // Brows 17..21 and 22..26.
    for i in 0..5 {
        let s = (PI * i as f32 / 4.0).sin();
        p[17 + i] = [0.25 + 0.05 * i as f32, 0.33 - 0.03 * s];
        p[22 + i] = [0.55 + 0.05 * i as f32, 0.33 - 0.03 * s];
    }
    // Nose bridge 27..30, nostrils 31..35.
    for i in 0..4 {
        p[27 + i] = [0.5, 0.40 + 0.05 * i as f32];
    }
    for i in 0..5 {
        let dx = i as f32 - 2.0;
        p[31 + i] = [0.5 + 0.035 * dx, 0.60 + 0.01 * (1.0 - dx.abs() / 2.0)];
    }
    // Eyes 36..41 and 42..47: corner, two upper, corner, two lower.
    for (base, cx) in [(36, 0.35f32), (42, 0.65f32)] {
        let pts = [
            (-1.0, 0.0),
            (-0.35, -1.0),
            (0.35, -1.0),
            (1.0, 0.0),
            (0.35, 1.0),
            (-0.35, 1.0),
        ];
        for (k, (u, v)) in pts.iter().enumerate() {
            p[base + k] = [cx + 0.065 * u, 0.43 + 0.022 * v];
        }
    }
    // Outer lips 48..59, inner lips 60..67.
    for k in 0..12 {
        let th = PI + k as f32 * 2.0 * PI / 12.0;
        p[48 + k] = [0.5 + 0.12 * th.cos(), 0.72 + 0.04 * th.sin()];
    }
    for k in 0..8 {
        let th = PI + k as f32 * 2.0 * PI / 8.0;
        p[60 + k] = [0.5 + 0.09 * th.cos(), 0.72 + 0.012 * th.sin()];
    }
    p
}

/// The action units the generator animates (FACS numbers).
pub const ANIMATED_AUS: &[i64] = &[1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26];

/// Displacement of landmark `i` under action unit `au` at full (macro)
/// intensity, in face-normalised units; `(0, 0)` where the AU does not
/// move that point. Directions follow the FACS descriptions; magnitudes
/// are those of a clear macro-expression (a few percent of the face).
pub fn au_motion(au: i64, i: usize) -> [f32; 2] {
    let m = 0.05f32;
    match au {
        // Inner brow raiser: the inner halves of the brows go up.
        1 => match i {
            20..=23 => [0.0, -m],
            19 | 24 => [0.0, -0.5 * m],
            _ => [0.0; 2],
        },
        // Outer brow raiser.
        2 => match i {
            17 | 18 | 25 | 26 => [0.0, -m],
            19 | 24 => [0.0, -0.5 * m],
            _ => [0.0; 2],
        },
        // Brow lowerer: brows down and together.
        4 => match i {
            17..=21 => [0.4 * m, 0.8 * m],
            22..=26 => [-0.4 * m, 0.8 * m],
            _ => [0.0; 2],
        },
        // Upper lid raiser.
        5 => match i {
            37 | 38 | 43 | 44 => [0.0, -0.6 * m],
            _ => [0.0; 2],
        },
        // Cheek raiser: lower lids and cheeks up.
        6 => match i {
            40 | 41 | 46 | 47 => [0.0, -0.5 * m],
            1 | 2 | 14 | 15 => [0.0, -0.6 * m],
            _ => [0.0; 2],
        },
        // Lid tightener: both lids towards the eye's centre line.
        7 => match i {
            37 | 38 | 43 | 44 => [0.0, 0.4 * m],
            40 | 41 | 46 | 47 => [0.0, -0.4 * m],
            _ => [0.0; 2],
        },
        // Nose wrinkler: nostrils and the inner brows up a little.
        9 => match i {
            31 | 32 | 34 | 35 => [0.0, -0.7 * m],
            29 | 30 => [0.0, -0.4 * m],
            21 | 22 => [0.0, 0.3 * m],
            _ => [0.0; 2],
        },
        // Upper lip raiser.
        10 => match i {
            49..=53 | 61..=63 => [0.0, -0.8 * m],
            _ => [0.0; 2],
        },
        // Lip corner puller: corners out and up.
        12 => match i {
            48 | 60 => [-0.6 * m, -0.7 * m],
            54 | 64 => [0.6 * m, -0.7 * m],
            49 | 59 => [-0.3 * m, -0.3 * m],
            53 | 55 => [0.3 * m, -0.3 * m],
            _ => [0.0; 2],
        },
        // Dimpler: corners tighten inwards.
        14 => match i {
            48 | 60 => [0.5 * m, 0.0],
            54 | 64 => [-0.5 * m, 0.0],
            _ => [0.0; 2],
        },
        // Lip corner depressor.
        15 => match i {
            48 | 60 | 54 | 64 => [0.0, 0.8 * m],
            59 | 55 => [0.0, 0.3 * m],
            _ => [0.0; 2],
        },
        // Chin raiser: lower lip and chin up.
        17 => match i {
            55..=59 | 65..=67 => [0.0, -0.6 * m],
            7..=9 => [0.0, -0.7 * m],
            _ => [0.0; 2],
        },
        // Lip stretcher: corners straight out.
        20 => match i {
            48 | 60 => [-0.8 * m, 0.1 * m],
            54 | 64 => [0.8 * m, 0.1 * m],
            _ => [0.0; 2],
        },
        // Lip tightener: lips thin (outer contour towards the mouth line).
        23 => match i {
            49..=53 => [0.0, 0.4 * m],
            55..=59 => [0.0, -0.4 * m],
            _ => [0.0; 2],
        },
        // Lip pressor: lips pressed, corners in.
        24 => match i {
            49..=53 | 61..=63 => [0.0, 0.3 * m],
            55..=59 | 65..=67 => [0.0, -0.3 * m],
            48 => [0.3 * m, 0.0],
            54 => [-0.3 * m, 0.0],
            _ => [0.0; 2],
        },
        // Lips part.
        25 => match i {
            55..=59 | 65..=67 => [0.0, 0.5 * m],
            _ => [0.0; 2],
        },
        // Jaw drop: lower lip and jaw down.
        26 => match i {
            55..=59 | 65..=67 => [0.0, 0.9 * m],
            5..=11 => [0.0, 0.8 * m],
            _ => [0.0; 2],
        },
        _ => [0.0; 2],
    }
}

/// How a subject looks: fixed per identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Horizontal and vertical face scale.
    pub scale: [f32; 2],
    /// Per-landmark offsets that make the face shape personal.
    pub shape: Landmarks,
    /// Skin RGB in [0, 1].
    pub skin: [f32; 3],
    /// Feature darkness (brows, eyes, lips).
    pub ink: f32,
    /// Texture: a few smooth sinusoids `(amp, fx, fy, phase)`.
    pub texture: Vec<[f32; 4]>,
    /// Lighting gradient (x, y) across the face.
    pub light: [f32; 2],
}

/// Renders one frame: `lm` are the landmarks already moved and posed,
/// `(h, w)` the output size; returns `[channels][h*w]` values in [0, 1].
pub fn render(id: &Identity, lm: &Landmarks, h: usize, w: usize, color: bool) -> Vec<Vec<f32>> {
    // Face ellipse from the jaw and brows.
    // Anchored on the nose bridge and chin, not the brows, so raising a
    // brow does not move the whole face outline.
    let top = lm[27][1] - 0.16;
    let (cx, cy) = ((lm[0][0] + lm[16][0]) / 2.0, (top + lm[8][1]) / 2.0);
    let rx = (lm[16][0] - lm[0][0]).abs() / 2.0 + 0.01;
    let ry = (lm[8][1] - top).abs() / 2.0 + 0.03;
    let strokes: &[(&[usize], f32, f32)] = &[
        // (polyline, darkness, width)
        (&[17, 18, 19, 20, 21], 0.55, 0.018),
        (&[22, 23, 24, 25, 26], 0.55, 0.018),
        (&[36, 37, 38, 39, 40, 41, 36], 0.6, 0.010),
        (&[42, 43, 44, 45, 46, 47, 42], 0.6, 0.010),
        (&[27, 28, 29, 30], 0.12, 0.012),
        (&[31, 32, 33, 34, 35], 0.3, 0.010),
        (
            &[48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 48],
            0.35,
            0.012,
        ),
        (&[60, 61, 62, 63, 64, 65, 66, 67, 60], 0.45, 0.008),
        (&[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 0.15, 0.010),
    ];
    let mut segs: Vec<([f32; 2], [f32; 2], f32, f32)> = Vec::new();
    for (line, dark, width) in strokes {
        for pair in line.windows(2) {
            segs.push((lm[pair[0]], lm[pair[1]], dark * id.ink, *width));
        }
    }
    // Pupils: dark blobs at each eye's centre.
    let eye = |b: usize| {
        let mut c = [0f32; 2];
        for p in &lm[b..b + 6] {
            c[0] += p[0] / 6.0;
            c[1] += p[1] / 6.0;
        }
        c
    };
    let pupils = [eye(36), eye(42)];
    let mut gray = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            let e = ((u - cx) / rx).powi(2) + ((v - cy) / ry).powi(2);
            // Soft face edge against a darker background.
            let inside = 1.0 / (1.0 + ((e - 1.0) * 12.0).exp());
            let mut tex = 0.0;
            for t in &id.texture {
                tex += t[0] * (2.0 * PI * (t[1] * u + t[2] * v) + t[3]).sin();
            }
            let light = 1.0 + id.light[0] * (u - 0.5) + id.light[1] * (v - 0.5);
            let mut val = (0.85 + tex) * light * inside + 0.12 * (1.0 - inside);
            for (a, b, dark, width) in &segs {
                let d2 = seg_dist2([u, v], *a, *b);
                val -= dark * (-d2 / (2.0 * width * width)).exp() * inside;
            }
            for p in &pupils {
                let d2 = (u - p[0]).powi(2) + (v - p[1]).powi(2);
                val -= 0.5 * id.ink * (-d2 / (2.0 * 0.008f32.powi(2))).exp() * inside;
            }
            gray[y * w + x] = val;
        }
    }
    if color {
        id.skin
            .iter()
            .map(|s| gray.iter().map(|g| (g * s).clamp(0.0, 1.0)).collect())
            .collect()
    } else {
        let lum = 0.299 * id.skin[0] + 0.587 * id.skin[1] + 0.114 * id.skin[2];
        vec![gray.iter().map(|g| (g * lum).clamp(0.0, 1.0)).collect()]
    }
}

/// A photographed face whose features sit on the template landmarks
/// (`assets/astronaut_face.png`, see its ATTRIBUTION.md): RGB in [0, 1].
pub struct Photo {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Pixels in row-major order (`y * w + x`), each channel in [0, 1].
    pub rgb: Vec<[f32; 3]>,
}

/// The astronaut photo, decoded once.
pub fn astronaut() -> &'static Photo {
    static PHOTO: std::sync::OnceLock<Photo> = std::sync::OnceLock::new();
    PHOTO.get_or_init(|| {
        // The asset is compiled in and checked by a test, so decoding it
        // cannot fail at run time.
        let img = image::load_from_memory(include_bytes!("../assets/astronaut_face.png"))
            .map(|i| i.to_rgb8())
            .unwrap_or_else(|_| image::RgbImage::new(1, 1));
        Photo {
            w: img.width() as usize,
            h: img.height() as usize,
            rgb: img
                .pixels()
                .map(|p| p.0.map(|v| v as f32 / 255.0))
                .collect(),
        }
    })
}

impl Photo {
    /// Bilinear sample at `(u, v)` in [0, 1] (clamped at the border).
    pub fn sample(&self, u: f32, v: f32) -> [f32; 3] {
        let x = (u * self.w as f32 - 0.5).clamp(0.0, (self.w - 1) as f32);
        let y = (v * self.h as f32 - 0.5).clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |x: usize, y: usize| self.rgb[y * self.w + x];
        let mut out = [0f32; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let top = at(x0, y0)[c] * (1.0 - fx) + at(x1, y0)[c] * fx;
            let bottom = at(x0, y1)[c] * (1.0 - fx) + at(x1, y1)[c] * fx;
            *o = top * (1.0 - fy) + bottom * fy;
        }
        out
    }
}

/// Renders `photo` moved from its own landmarks (`neutral`) to `lm`: each
/// output pixel samples the photo where the landmark motion field says it
/// came from (the same field as [`flow_field`], so the generator's flow
/// port stays exact up to the warp's interpolation); the identity adds
/// its lighting gradient.
pub fn render_photo(
    photo: &Photo,
    id: &Identity,
    neutral: &Landmarks,
    lm: &Landmarks,
    h: usize,
    w: usize,
    color: bool,
) -> Vec<Vec<f32>> {
    let [fx, fy] = flow_field(neutral, lm, h, w);
    let mut planes = vec![vec![0f32; h * w]; if color { 3 } else { 1 }];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            let px = photo.sample(u - fx[i] / w as f32, v - fy[i] / h as f32);
            let light = 1.0 + id.light[0] * (u - 0.5) + id.light[1] * (v - 0.5);
            if color {
                for (c, plane) in planes.iter_mut().enumerate() {
                    plane[i] = (px[c] * light).clamp(0.0, 1.0);
                }
            } else {
                planes[0][i] =
                    ((0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]) * light).clamp(0.0, 1.0);
            }
        }
    }
    planes
}

/// Squared distance from `p` to the segment `a`–`b`.
fn seg_dist2(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a[0] + t * dx - p[0], a[1] + t * dy - p[1]);
    qx * qx + qy * qy
}

/// Dense motion between two landmark sets, in pixels per axis: each pixel
/// takes the Gaussian-weighted displacement of nearby landmarks. This is
/// the generator's exact onset→apex flow (loaders of real data estimate it).
pub fn flow_field(from: &Landmarks, to: &Landmarks, h: usize, w: usize) -> [Vec<f32>; 2] {
    let mut fx = vec![0f32; h * w];
    let mut fy = vec![0f32; h * w];
    let s2 = 2.0 * 0.03f32.powi(2);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            let (mut sx, mut sy, mut sw) = (0f32, 0f32, 0f32);
            for (a, b) in from.iter().zip(to.iter()) {
                let k = (-((u - a[0]).powi(2) + (v - a[1]).powi(2)) / s2).exp();
                sx += k * (b[0] - a[0]);
                sy += k * (b[1] - a[1]);
                sw += k;
            }
            // Far from every landmark the field fades to zero rather than
            // extrapolating one distant point's motion.
            let norm = sw.max(1.0);
            fx[y * w + x] = sx / norm * w as f32;
            fy[y * w + x] = sy / norm * h as f32;
        }
    }
    [fx, fy]
}

/// The face box `[x, y, w, h]` around a set of points (same units).
pub fn bounding_box(points: &[[f32; 2]]) -> [f32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for q in points {
        x0 = x0.min(q[0]);
        y0 = y0.min(q[1]);
        x1 = x1.max(q[0]);
        y1 = y1.max(q[1]);
    }
    [x0, y0, x1 - x0, y1 - y0]
}

/// The 5-point landmarks face detectors give (MTCNN, DBFace: eye centres,
/// nose tip, mouth corners) from the 68-point iBUG scheme.
pub fn five_points(lm: &[[f32; 2]]) -> [[f32; 2]; 5] {
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len() as f32;
        let (sx, sy) = r.fold((0f32, 0f32), |(a, b), i| (a + lm[i][0], b + lm[i][1]));
        [sx / n, sy / n]
    };
    [mean(36..42), mean(42..48), lm[30], lm[48], lm[54]]
}

/// The face crop for 68 landmarks in pixels: their box grown by a quarter
/// on each side and made square around its centre (`[x, y, w, h]`,
/// clipped at 0; the decoder clips the far sides to the frame).
pub fn crop_box(pts: &[[f32; 2]]) -> [u32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for q in pts {
        x0 = x0.min(q[0]);
        y0 = y0.min(q[1]);
        x1 = x1.max(q[0]);
        y1 = y1.max(q[1]);
    }
    if pts.is_empty() {
        return [0, 0, 1, 1];
    }
    let side = (x1 - x0).max(y1 - y0) * 1.5;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let x = (cx - side / 2.0).max(0.0);
    let y = (cy - side / 2.0).max(0.0);
    [
        x as u32,
        y as u32,
        side.max(1.0) as u32,
        side.max(1.0) as u32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_a_face() {
        let t = template();
        assert!(t
            .iter()
            .all(|p| (0.0..=1.0).contains(&p[0]) && (0.0..=1.0).contains(&p[1])));
        // Brows above eyes above nose tip above mouth above chin.
        assert!(t[19][1] < t[37][1] && t[37][1] < t[33][1]);
        assert!(t[33][1] < t[51][1] && t[57][1] < t[8][1]);
        // Left and right mirror each other.
        assert!((t[36][0] - (1.0 - t[45][0])).abs() < 1e-5);
    }

    #[test]
    fn every_animated_au_moves_something() {
        for au in ANIMATED_AUS {
            let moved = (0..68).filter(|i| au_motion(*au, *i) != [0.0, 0.0]).count();
            assert!(moved >= 2, "AU{au} moves {moved} points");
        }
        assert_eq!(au_motion(3, 20), [0.0, 0.0], "AU3 is not animated");
    }

    #[test]
    fn a_raised_brow_changes_the_brow_region_only() {
        let id = Identity {
            scale: [1.0, 1.0],
            shape: [[0.0; 2]; 68],
            skin: [0.9, 0.7, 0.6],
            ink: 1.0,
            texture: vec![],
            light: [0.0, 0.0],
        };
        let t = template();
        let mut moved = t;
        for (i, p) in moved.iter_mut().enumerate() {
            let d = au_motion(1, i);
            p[0] += d[0];
            p[1] += d[1];
        }
        let (a, b) = (
            render(&id, &t, 64, 64, false),
            render(&id, &moved, 64, 64, false),
        );
        let diff = |r0: usize, r1: usize| -> f32 {
            (r0 * 64..r1 * 64).map(|k| (a[0][k] - b[0][k]).abs()).sum()
        };
        assert!(diff(15, 25) > 1.0, "brow rows change: {}", diff(15, 25));
        assert!(diff(40, 60) < 1e-3, "mouth rows do not: {}", diff(40, 60));
    }
}
