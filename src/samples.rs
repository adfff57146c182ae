//! The sample programs bundled into the binary, installed by `--samples`.

use crate::domain::AppId;
use crate::platform::Platform;

/// Each bundled sample: its appid and its built component.
pub const SAMPLES: &[(&str, &[u8])] = &[
    (
        "hello",
        include_bytes!("../sample-programs/dist/hello.wasm"),
    ),
    (
        "hostile",
        include_bytes!("../sample-programs/dist/hostile.wasm"),
    ),
];

/// Uploads every sample whose exact bytes are not already the app's active version.
pub async fn install(platform: &Platform) -> anyhow::Result<()> {
    for (name, bytes) in SAMPLES {
        let appid: AppId = name.parse().map_err(anyhow::Error::msg)?;
        let digest = crate::domain::Sha256Digest::of(bytes);
        let current = platform.db().active_version(&appid).await?;
        if current.is_some_and(|active| active.sha256 == digest) {
            continue;
        }
        platform
            .upload(&appid, bytes.to_vec())
            .await
            .map_err(|err| anyhow::anyhow!("installing sample {name}: {err}"))?;
    }
    Ok(())
}
