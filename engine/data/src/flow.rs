//! TV-L1 optical flow (Zach, Pock & Bischof 2007), as specified by Sánchez,
//! Meinhardt-Llopis & Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013:
//! a coarse-to-fine pyramid, several warps per scale, and the primal–dual
//! iterations of the thresholding and projection steps.
//!
//! No maintained Rust crate implements it (the `imageproc` and `opencv`
//! bindings either lack it or need a system OpenCV), and micro-expression
//! pipelines (STSTNet, OFF-ApexNet, MEB) all start from onset→apex TV-L1
//! flow, so it is written here and checked against fields whose true
//! motion is known.
//!
//! Convention: `u(x)` is the displacement with `I1(x + u(x)) ≈ I0(x)`.

/// A grayscale image, row-major, intensities in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Gray {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Intensities in row-major order (`y * w + x`), `w * h` of them.
    pub px: Vec<f32>,
}

impl Gray {
    /// Wraps row-major pixels; `px` must hold `w * h` values (checked in debug
    /// builds only).
    pub fn new(w: usize, h: usize, px: Vec<f32>) -> Self {
        debug_assert_eq!(px.len(), w * h);
        Gray { w, h, px }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.px[y * self.w + x]
    }

    /// Bilinear sample with coordinates clamped to the border.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = self.at(x0, y0) * (1.0 - fx) + self.at(x1, y0) * fx;
        let bot = self.at(x0, y1) * (1.0 - fx) + self.at(x1, y1) * fx;
        top * (1.0 - fy) + bot * fy
    }

    /// Half-size image, Gaussian-smoothed first (σ = 0.6 / zoom, as IPOL).
    fn downsample(&self) -> Gray {
        let s = smooth(self, 1.2);
        let (w, h) = (self.w.div_ceil(2).max(1), self.h.div_ceil(2).max(1));
        let px = (0..h)
            .flat_map(|y| {
                let s = &s;
                (0..w).map(move |x| s.sample(x as f32 * 2.0 + 0.5, y as f32 * 2.0 + 0.5))
            })
            .collect();
        Gray { w, h, px }
    }

    /// Central-difference gradients (one-sided at the border).
    fn gradient(&self) -> (Vec<f32>, Vec<f32>) {
        let (w, h) = (self.w, self.h);
        let mut gx = vec![0f32; w * h];
        let mut gy = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
                let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
                let dx = (xr - xl).max(1) as f32;
                let dy = (yd - yu).max(1) as f32;
                gx[y * w + x] = (self.at(xr, y) - self.at(xl, y)) / dx;
                gy[y * w + x] = (self.at(x, yd) - self.at(x, yu)) / dy;
            }
        }
        (gx, gy)
    }
}

/// Separable Gaussian blur.
fn smooth(g: &Gray, sigma: f32) -> Gray {
    let r = (2.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f32 = k.iter().sum();
    let (w, h) = (g.w as isize, g.h as isize);
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let d = j as isize - r;
                    let (xx, yy) = if horizontal {
                        ((x + d).clamp(0, w - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h - 1))
                    };
                    s += kv * src[(yy * w + xx) as usize];
                }
                out[(y * w + x) as usize] = s / norm;
            }
        }
        out
    };
    let px = pass(&pass(&g.px, true), false);
    Gray { w: g.w, h: g.h, px }
}

/// TV-L1 settings (IPOL defaults).
#[derive(Debug, Clone, Copy)]
pub struct TvL1 {
    /// Data-term weight λ.
    pub lambda: f32,
    /// Coupling θ.
    pub theta: f32,
    /// Dual step τ (≤ 0.25 for convergence).
    pub tau: f32,
    /// Pyramid levels, the input size included, each coarser one half the
    /// size; fewer are built once a level is under 8 pixels wide or high.
    pub scales: usize,
    /// Times the data term is re-linearised around the current flow at each
    /// scale.
    pub warps: usize,
    /// Stop a warp's iterations when the mean squared update is below ε².
    pub epsilon: f32,
    /// Upper bound on primal–dual iterations per warp when ε is not reached.
    pub max_iterations: usize,
}

impl Default for TvL1 {
    fn default() -> Self {
        TvL1 {
            lambda: 0.15,
            theta: 0.3,
            tau: 0.25,
            scales: 3,
            warps: 5,
            epsilon: 0.01,
            max_iterations: 300,
        }
    }
}

/// A dense flow field.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Width in pixels, that of the input frames.
    pub w: usize,
    /// Height in pixels, that of the input frames.
    pub h: usize,
    /// Horizontal displacement in pixels, row-major (`y * w + x`); positive is
    /// rightward.
    pub u: Vec<f32>,
    /// Vertical displacement in pixels, row-major (`y * w + x`); positive is
    /// downward.
    pub v: Vec<f32>,
}

impl TvL1 {
    /// The flow from `i0` to `i1` (same size).
    pub fn flow(&self, i0: &Gray, i1: &Gray) -> Flow {
        assert_eq!((i0.w, i0.h), (i1.w, i1.h), "frames of different sizes");
        // λ is tuned for 8-bit intensities (IPOL): frames arrive in [0, 1].
        let scaled = |g: &Gray| Gray::new(g.w, g.h, g.px.iter().map(|v| v * 255.0).collect());
        let mut p0 = vec![smooth(&scaled(i0), 0.8)];
        let mut p1 = vec![smooth(&scaled(i1), 0.8)];
        for _ in 1..self.scales {
            let (a, b) = (p0.last().unwrap_or(i0), p1.last().unwrap_or(i1));
            if a.w < 8 || a.h < 8 {
                break;
            }
            let (na, nb) = (a.downsample(), b.downsample());
            p0.push(na);
            p1.push(nb);
        }
        let coarsest = p0.len() - 1;
        let (w, h) = (p0[coarsest].w, p0[coarsest].h);
        let mut f = Flow {
            w,
            h,
            u: vec![0.0; w * h],
            v: vec![0.0; w * h],
        };
        for s in (0..=coarsest).rev() {
            if s != coarsest {
                f = upsample(&f, p0[s].w, p0[s].h);
            }
            self.refine(&p0[s], &p1[s], &mut f);
        }
        f
    }

    fn refine(&self, i0: &Gray, i1: &Gray, f: &mut Flow) {
        let (w, h) = (i0.w, i0.h);
        let n = w * h;
        let (g1x, g1y) = i1.gradient();
        let gx = Gray::new(w, h, g1x);
        let gy = Gray::new(w, h, g1y);
        let (mut p11, mut p12, mut p21, mut p22) =
            (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let lt = self.lambda * self.theta;
        let taut = self.tau / self.theta;
        for _ in 0..self.warps {
            // Linearise the data term around the current flow.
            let mut iw = vec![0f32; n];
            let mut ix = vec![0f32; n];
            let mut iy = vec![0f32; n];
            let mut g2 = vec![0f32; n];
            let mut rho_c = vec![0f32; n];
            for y in 0..h {
                for x in 0..w {
                    let k = y * w + x;
                    let (sx, sy) = (x as f32 + f.u[k], y as f32 + f.v[k]);
                    iw[k] = i1.sample(sx, sy);
                    ix[k] = gx.sample(sx, sy);
                    iy[k] = gy.sample(sx, sy);
                    g2[k] = ix[k] * ix[k] + iy[k] * iy[k];
                    rho_c[k] = iw[k] - ix[k] * f.u[k] - iy[k] * f.v[k] - i0.px[k];
                }
            }
            for _ in 0..self.max_iterations {
                let mut err = 0.0f64;
                for k in 0..n {
                    let rho = rho_c[k] + ix[k] * f.u[k] + iy[k] * f.v[k];
                    let (dx, dy) = if rho < -lt * g2[k] {
                        (lt * ix[k], lt * iy[k])
                    } else if rho > lt * g2[k] {
                        (-lt * ix[k], -lt * iy[k])
                    } else if g2[k] > 1e-10 {
                        (-rho * ix[k] / g2[k], -rho * iy[k] / g2[k])
                    } else {
                        (0.0, 0.0)
                    };
                    let (vx, vy) = (f.u[k] + dx, f.v[k] + dy);
                    let (x, y) = (k % w, k / w);
                    let nu = vx + self.theta * divergence(&p11, &p12, w, h, x, y);
                    let nv = vy + self.theta * divergence(&p21, &p22, w, h, x, y);
                    err += ((nu - f.u[k]).powi(2) + (nv - f.v[k]).powi(2)) as f64;
                    f.u[k] = nu;
                    f.v[k] = nv;
                }
                // Dual ascent on p, projected onto the unit ball.
                for k in 0..n {
                    let (x, y) = (k % w, k / w);
                    let (ux, uy) = forward_gradient(&f.u, w, h, x, y);
                    let (vx, vy) = forward_gradient(&f.v, w, h, x, y);
                    let gu = 1.0 + taut * (ux * ux + uy * uy).sqrt();
                    let gv = 1.0 + taut * (vx * vx + vy * vy).sqrt();
                    p11[k] = (p11[k] + taut * ux) / gu;
                    p12[k] = (p12[k] + taut * uy) / gu;
                    p21[k] = (p21[k] + taut * vx) / gv;
                    p22[k] = (p22[k] + taut * vy) / gv;
                }
                if err / (n as f64) < (self.epsilon * self.epsilon) as f64 {
                    break;
                }
            }
        }
    }
}

fn forward_gradient(f: &[f32], w: usize, h: usize, x: usize, y: usize) -> (f32, f32) {
    let k = y * w + x;
    let dx = if x + 1 < w { f[k + 1] - f[k] } else { 0.0 };
    let dy = if y + 1 < h { f[k + w] - f[k] } else { 0.0 };
    (dx, dy)
}

/// Backward-difference divergence, the adjoint of [`forward_gradient`].
fn divergence(p1: &[f32], p2: &[f32], w: usize, h: usize, x: usize, y: usize) -> f32 {
    let k = y * w + x;
    let a = if x == 0 {
        p1[k]
    } else if x + 1 == w {
        -p1[k - 1]
    } else {
        p1[k] - p1[k - 1]
    };
    let b = if y == 0 {
        p2[k]
    } else if y + 1 == h {
        -p2[k - w]
    } else {
        p2[k] - p2[k - w]
    };
    a + b
}

/// Flow at a finer scale: sampled bilinearly and scaled by the size ratio.
fn upsample(f: &Flow, w: usize, h: usize) -> Flow {
    let (sx, sy) = (w as f32 / f.w as f32, h as f32 / f.h as f32);
    let gu = Gray::new(f.w, f.h, f.u.clone());
    let gv = Gray::new(f.w, f.h, f.v.clone());
    let mut u = vec![0f32; w * h];
    let mut v = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = ((x as f32 + 0.5) / sx - 0.5, (y as f32 + 0.5) / sy - 0.5);
            u[y * w + x] = gu.sample(cx, cy) * sx;
            v[y * w + x] = gv.sample(cx, cy) * sy;
        }
    }
    Flow { w, h, u, v }
}

impl Flow {
    /// Subtracts the flow at `(x, y)` (the nose tip): what remains is the
    /// facial motion, not the head's.
    pub fn compensate(&mut self, x: f32, y: f32) {
        let gu = Gray::new(self.w, self.h, self.u.clone());
        let gv = Gray::new(self.w, self.h, self.v.clone());
        let (du, dv) = (gu.sample(x, y), gv.sample(x, y));
        self.u.iter_mut().for_each(|a| *a -= du);
        self.v.iter_mut().for_each(|a| *a -= dv);
    }

    /// HSV rendering as RGB bytes: hue = direction, value = magnitude
    /// relative to `max` (or the field's largest), saturation 1.
    pub fn to_rgb(&self, max: Option<f32>) -> Vec<[u8; 3]> {
        let mags: Vec<f32> = self
            .u
            .iter()
            .zip(&self.v)
            .map(|(a, b)| (a * a + b * b).sqrt())
            .collect();
        let top = max
            .unwrap_or_else(|| mags.iter().copied().fold(0.0, f32::max))
            .max(1e-6);
        self.u
            .iter()
            .zip(&self.v)
            .zip(&mags)
            .map(|((a, b), m)| {
                let hue = (b.atan2(*a).to_degrees() + 360.0) % 360.0;
                hsv_to_rgb(hue, 1.0, (m / top).min(1.0))
            })
            .collect()
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [u8; 3] {
    let c = v * s;
    let hp = h / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|t| ((t + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// Where computed flows are kept: `MER_CACHE_DIR`, else
/// `~/.cache/mer`, under `flow/`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    super::cache_root().map(|d| d.join("flow"))
}

/// TV-L1 flow between two decoded frames, cached on disk by the BLAKE3 of
/// both frames' pixels, their size and the settings: a clip's flow is
/// computed once per machine, whatever the recipe. A cache that cannot be
/// written only costs time.
pub fn cached_flow(tv: &TvL1, i0: &Gray, i1: &Gray) -> Flow {
    let mut h = blake3::Hasher::new();
    h.update(b"mer-tvl1-v1");
    for g in [i0, i1] {
        h.update(&(g.w as u64).to_le_bytes());
        h.update(&(g.h as u64).to_le_bytes());
        for p in &g.px {
            h.update(&p.to_le_bytes());
        }
    }
    h.update(format!("{tv:?}").as_bytes());
    let key = h.finalize().to_hex().to_string();
    let n = i0.w * i0.h;
    let path = cache_dir().map(|d| d.join(&key[..2]).join(format!("{key}.f32")));
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        if bytes.len() == 8 * n {
            let vals: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return Flow {
                w: i0.w,
                h: i0.h,
                u: vals[..n].to_vec(),
                v: vals[n..].to_vec(),
            };
        }
    }
    let f = tv.flow(i0, i1);
    if let Some(p) = path {
        let bytes: Vec<u8> =
            f.u.iter()
                .chain(&f.v)
                .flat_map(|x| x.to_le_bytes())
                .collect();
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = mer_store::write_atomic(&p, &bytes);
    }
    f
}

/// Frame pairs whose true motion is known, for tests and `cargo bench
/// --bench flow`: a smooth texture and its copy moved by a given field.
pub mod reference {
    use super::{Flow, Gray};

    /// A smooth texture, defined everywhere, so a shifted copy is exact.
    pub fn texture(x: f32, y: f32) -> f32 {
        0.5 + 0.2 * (0.31 * x + 0.17 * y).sin()
            + 0.15 * (0.23 * x - 0.41 * y + 1.0).cos()
            + 0.1 * (0.57 * x + 0.05 * y * y / 10.0).sin()
    }

    /// A `w`×`h` pair `(I0, I1)` of [`texture`] where `I1` is `I0` moved by
    /// `motion(x, y) = (u, v)` in pixels, so `I1(x + u) ≈ I0(x)`.
    pub fn field(w: usize, h: usize, motion: impl Fn(f32, f32) -> (f32, f32)) -> (Gray, Gray) {
        let i0: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| texture(x as f32, y as f32)))
            .collect();
        // I1(x + u(x)) = I0(x): for a smooth u, I1(z) ≈ I0(z − u(z)).
        let i1: Vec<f32> = (0..h)
            .flat_map(|y| {
                let m = &motion;
                (0..w).map(move |x| {
                    let (u, v) = m(x as f32, y as f32);
                    texture(x as f32 - u, y as f32 - v)
                })
            })
            .collect();
        (Gray::new(w, h, i0), Gray::new(w, h, i1))
    }

    /// Mean endpoint error over the interior (8-pixel margin).
    pub fn epe(f: &Flow, motion: impl Fn(f32, f32) -> (f32, f32)) -> f32 {
        let (mut s, mut n) = (0.0, 0);
        for y in 8..f.h - 8 {
            for x in 8..f.w - 8 {
                let (u, v) = motion(x as f32, y as f32);
                let k = y * f.w + x;
                s += ((f.u[k] - u).powi(2) + (f.v[k] - v).powi(2)).sqrt();
                n += 1;
            }
        }
        s / n as f32
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{epe, field};
    use super::*;

    #[test]
    fn recovers_a_translation_and_a_rotation() {
        let shift = |_: f32, _: f32| (1.5, -0.75);
        let (a, b) = field(64, 64, shift);
        let f = TvL1::default().flow(&a, &b);
        let e = epe(&f, shift);
        assert!(e < 0.1, "translation EPE {e}");
        // A small rotation about the centre: a smooth, non-constant field.
        let rot = |x: f32, y: f32| {
            let (cx, cy, t) = (32.0, 32.0, 0.04f32);
            let (dx, dy) = (x - cx, y - cy);
            (
                dx * t.cos() - dy * t.sin() - dx,
                dx * t.sin() + dy * t.cos() - dy,
            )
        };
        let (a, b) = field(64, 64, rot);
        let f = TvL1::default().flow(&a, &b);
        let e = epe(&f, rot);
        assert!(e < 0.15, "rotation EPE {e}");
        // No motion, no flow.
        let (a, _) = field(32, 32, shift);
        let f = TvL1::default().flow(&a, &a);
        assert!(f.u.iter().chain(&f.v).all(|x| x.abs() < 1e-3));
    }

    #[test]
    fn nose_compensation_removes_head_motion_and_hsv_encodes_direction() {
        let shift = |_: f32, _: f32| (1.0, 0.5);
        let (a, b) = field(48, 48, shift);
        let mut f = TvL1::default().flow(&a, &b);
        f.compensate(24.0, 24.0);
        assert!(epe(&f, |_, _| (0.0, 0.0)) < 0.1);
        let right = Flow {
            w: 2,
            h: 1,
            u: vec![1.0, 0.0],
            v: vec![0.0, 1.0],
        };
        let rgb = right.to_rgb(None);
        assert_eq!(rgb[0], [255, 0, 0], "rightward is red");
        assert_eq!(rgb[1], [128, 255, 0], "downward (90°) is yellow-green");
    }

    #[test]
    fn the_disk_cache_returns_the_computed_field() {
        let dir = std::env::temp_dir().join(format!("mer-flow-cache-{}", std::process::id()));
        std::env::set_var("MER_CACHE_DIR", &dir);
        let (a, b) = field(24, 24, |_, _| (0.5, 0.25));
        let tv = TvL1::default();
        let first = cached_flow(&tv, &a, &b);
        let files = walk(&dir);
        assert_eq!(files, 1, "one cached field");
        let second = cached_flow(&tv, &a, &b);
        assert_eq!(first, second);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}
