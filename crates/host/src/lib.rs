//! Host-only support for the kernels, kept out of the `no_std` `kernels`
//! crate: [`pool::ThreadPool`], the std thread pool that implements
//! [`kernels::exec::Executor`]; [`hugebuf::HugeBuf`], the 2 MiB-aligned
//! model buffer advised to use transparent huge pages; and
//! [`mapfile::MappedFile`], a model file mapped copy-on-write.
//!
//! Like `kernels` (and unlike the crates above it), this kernel-layer support
//! crate may use `unsafe`: the pool hands disjoint task indices to threads,
//! the buffer calls the allocator and `madvise`, the mapping calls `mmap`.
//! Every block carries a `// SAFETY:` comment.

pub mod hugebuf;
#[cfg(unix)]
pub mod mapfile;
pub mod pool;
