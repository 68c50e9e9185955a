//! Memory read bandwidth against the matvec kernels' effective bandwidth.
//!
//! `cargo run --release -p host --example bandwidth -- [MiB] [threads]`
//!
//! 1. A plain read probe: sums a buffer of MiB with four independent 64-bit
//!    accumulators per thread (best of 30 passes), on 1..=threads threads,
//!    on ordinary 4 KiB pages and on transparent huge pages (`host::hugebuf`).
//! 2. `ops::matvec` over a Q8_0 / Q4_0 / Q4_K / Q6_K / F32 matrix of about the
//!    same size, and Q4_0 / Q4_K repacked into row octets as the engine loads
//!    them: bytes of weights read per second (best of 30).
//! 3. `ops::matmul` of 64 activation rows against a 2048 x 2048 matrix:
//!    multiply-adds per second (best of 30).

use std::time::Instant;

use host::pool::ThreadPool;
use kernels::exec::Executor;
use kernels::ops::{self, ActScratch, Weights};
use kernels::quant::*;

fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut b = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let max_threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let n = mib << 20;
    let buf: Vec<u64> = (0..n / 8).map(|i| i as u64).collect();
    if std::env::var("LBM_LEVEL").as_deref() == Ok("avx2") {
        kernels::cpu::force_level(kernels::cpu::SimdLevel::Avx2);
    }
    println!("simd level: {}", kernels::cpu::level().name());
    // The same buffer on transparent huge pages, as `lbm` loads models.
    let mut huge = host::hugebuf::HugeBuf::zeroed(n).expect("memory");
    huge.as_mut().copy_from_slice(kernels::cast::bytes_of(&buf));
    let huge_words: &[u64] = kernels::cast::view(huge.as_ref()).expect("aligned");
    for (pages, buf) in [("4 KiB pages", &buf[..]), ("huge pages", huge_words)] {
        for t in 1..=max_threads {
            let pool = ThreadPool::new(t);
            let chunk = buf.len().div_ceil(t * 8);
            let s = best(|| {
                let sums: Vec<std::sync::atomic::AtomicU64> = (0..t * 8).map(|_| Default::default()).collect();
                pool.run(buf.len().div_ceil(chunk), &|i| {
                    let part = &buf[i * chunk..((i + 1) * chunk).min(buf.len())];
                    // Four independent sums so the loop is bound by loads, not adds.
                    let mut a = [0u64; 4];
                    for c in part.chunks_exact(4) {
                        for k in 0..4 {
                            a[k] = a[k].wrapping_add(c[k]);
                        }
                    }
                    sums[i].store(a.iter().fold(0u64, |x, y| x.wrapping_add(*y)), std::sync::atomic::Ordering::Relaxed);
                });
                std::hint::black_box(sums);
            });
            println!("read probe, {pages}, {t} thread(s): {:.1} GB/s ({mib} MiB, best of 30)", n as f64 / s / 1e9);
        }
    }
    // A matrix of about `mib` MiB in each type, cols = 2048.
    let cols = 2048;
    let x: Vec<f32> = (0..cols).map(|i| ((i * 37) % 100) as f32 / 50.0 - 1.0).collect();
    let mut scratch = ActScratch::new(cols, 1);
    for t in 1..=max_threads {
        let pool = ThreadPool::new(t);
        let exec: &dyn Executor = &pool;
        macro_rules! run {
            ($name:expr, $blk:ty, $bytes:expr, $q:expr, $wrap:ident) => {{
                let rows = n / $bytes;
                let f: Vec<f32> = (0..rows.min(64) * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                let mut one = vec![<$blk>::default(); f.len() / $q];
                quantize(&f, &mut one);
                let w: Vec<$blk> = one.iter().cycle().take(rows * cols / $q).copied().collect();
                let mut out = vec![0.0f32; rows];
                let s = best(|| ops::matvec(exec, Weights::$wrap(&w), cols, &x, &mut scratch, &mut out));
                let bytes = std::mem::size_of_val(w.as_slice());
                println!(
                    "matvec {:>6}, {t} thread(s): {:.1} GB/s of weights ({} rows x {cols})",
                    $name,
                    bytes as f64 / s / 1e9,
                    rows
                );
                w
            }};
            // The same matrix repacked into row octets, as the engine loads it.
            ($name:expr, $blk:ty, $bytes:expr, $q:expr, $wrap:ident, $x8:ty, $repack:ident, $wrap8:ident) => {{
                let w = run!($name, $blk, $bytes, $q, $wrap);
                let rows = w.len() * $q / cols / 8 * 8;
                let mut b = kernels::cast::bytes_of(&w[..rows * cols / $q]).to_vec();
                assert!(kernels::quant::$repack(&mut b, rows, cols / $q));
                let w8: Vec<$x8> = b.chunks_exact(std::mem::size_of::<$x8>()).map(kernels::cast::read_pod).collect();
                let mut out = vec![0.0f32; rows];
                let s = best(|| ops::matvec(exec, Weights::$wrap8(&w8), cols, &x, &mut scratch, &mut out));
                println!(
                    "matvec {:>6}, {t} thread(s): {:.1} GB/s of weights ({} rows x {cols})",
                    concat!($name, "x8"),
                    std::mem::size_of_val(w8.as_slice()) as f64 / s / 1e9,
                    rows
                );
            }};
        }
        fn quantize<T: Q>(f: &[f32], out: &mut [T]) {
            T::q(f, out)
        }
        trait Q: Sized {
            fn q(f: &[f32], out: &mut [Self]);
        }
        impl Q for BlockQ8_0 {
            fn q(f: &[f32], out: &mut [Self]) {
                quantize_row_q8_0(f, out)
            }
        }
        impl Q for BlockQ4_0 {
            fn q(f: &[f32], out: &mut [Self]) {
                quantize_row_q4_0(f, out)
            }
        }
        impl Q for BlockQ4K {
            fn q(f: &[f32], out: &mut [Self]) {
                quantize_row_q4_k(f, out)
            }
        }
        impl Q for BlockQ6K {
            fn q(f: &[f32], out: &mut [Self]) {
                quantize_row_q6_k(f, out)
            }
        }
        impl Q for f32 {
            fn q(f: &[f32], out: &mut [Self]) {
                out.copy_from_slice(f)
            }
        }
        run!("Q8_0", BlockQ8_0, cols / 32 * 34, 32, Q8_0);
        run!("Q4_0", BlockQ4_0, cols / 32 * 18, 32, Q4_0, BlockQ4_0x8, repack_q4_0x8_in_place, Q4_0x8);
        run!("Q4_K", BlockQ4K, cols / 256 * 144, 256, Q4_K, BlockQ4Kx8, repack_q4_kx8_in_place, Q4_Kx8);
        run!("Q6_K", BlockQ6K, cols / 256 * 210, 256, Q6_K, BlockQ6Kx8, repack_q6_kx8_in_place, Q6_Kx8);
        run!("F32", f32, cols * 4, 1, F32);
        // Prompt processing: 64 activation rows against a 2048 x 2048 matrix.
        let (rows, n) = (2048usize, 64usize);
        let f: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let xs: Vec<f32> = (0..n * cols).map(|i| ((i * 31) % 200) as f32 / 100.0 - 1.0).collect();
        let mut sc = ActScratch::new(cols, n);
        let mut out = vec![0.0f32; n * rows];
        let mut q8 = vec![BlockQ8_0::default(); rows * cols / 32];
        quantize_row_q8_0(&f, &mut q8);
        let mut q4 = vec![BlockQ4_0::default(); rows * cols / 32];
        quantize_row_q4_0(&f, &mut q4);
        let mut q4k = vec![BlockQ4K::default(); rows * cols / 256];
        quantize_row_q4_k(&f, &mut q4k);
        let mut q6k = vec![BlockQ6K::default(); rows * cols / 256];
        quantize_row_q6_k(&f, &mut q6k);
        for (name, w) in [
            ("F32", Weights::F32(&f)),
            ("Q8_0", Weights::Q8_0(&q8)),
            ("Q4_0", Weights::Q4_0(&q4)),
            ("Q4_K", Weights::Q4_K(&q4k)),
            ("Q6_K", Weights::Q6_K(&q6k)),
        ] {
            let s = best(|| ops::matmul(exec, w, cols, &xs, n, &mut sc, &mut out));
            println!(
                "matmul {name:>5}, {t} thread(s): {:.1} G multiply-adds/s ({n} x {rows} x {cols})",
                (n * rows * cols) as f64 / s / 1e9
            );
        }
    }
}
