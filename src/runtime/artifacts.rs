//! The on-disk cache of compiled components, keyed by (sha256 of the
//! component, engine fingerprint), so a restarted node loads instead of compiling.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::domain::Sha256Digest;

/// A directory of precompiled components that only this host writes.
///
/// Loading a precompiled artifact is `unsafe` in wasmtime because the bytes
/// are trusted to be machine code wasmtime produced. The cache upholds that:
/// files are named by the component's sha256 and the engine's fingerprint,
/// written by [`ArtifactCache::store`] to a temporary file and renamed into
/// place, so a reader never sees a partial artifact, and nothing else is ever
/// loaded from here.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
}

impl ArtifactCache {
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            fingerprint: engine_fingerprint(engine),
        })
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.fingerprint))
    }

    /// Loads the artifact for `digest`, if this host compiled it before.
    /// A file that does not load (a different engine build, say) is removed
    /// and reported as absent so the caller compiles afresh.
    pub fn load(&self, engine: &Engine, digest: &Sha256Digest) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: every file at this path was written by `store` below from
        // `Component::serialize` of this engine's configuration (the file name
        // carries the engine fingerprint); wasmtime additionally checks the
        // artifact's header against the engine before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "discarding unloadable artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the compiled form of `component` for later loads.
    pub fn store(&self, digest: &Sha256Digest, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(&bytes)?;
        file.as_file().sync_all()?;
        file.persist(self.path(digest))?;
        Ok(())
    }
}

/// A short hash of everything that makes an artifact loadable by this
/// engine: wasmtime's version, its compiler settings and target.
fn engine_fingerprint(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
