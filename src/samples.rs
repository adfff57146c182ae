//! The sample programs bundled into the binary, installed by `--samples`.

use crate::domain::AppId;
use crate::platform::Platform;

/// A bundled sample: its appid, its manifest and its built component.
pub struct Sample {
    pub appid: &'static str,
    pub manifest: &'static [u8],
    pub component: &'static [u8],
}

macro_rules! sample {
    ($name:literal) => {
        Sample {
            appid: $name,
            manifest: include_bytes!(concat!("../sample-programs/", $name, "/manifest.json")),
            component: include_bytes!(concat!("../sample-programs/dist/", $name, ".wasm")),
        }
    };
}

pub const SAMPLES: &[Sample] = &[
    sample!("hello"),
    sample!("hostile"),
    sample!("whoami"),
    sample!("notes"),
    sample!("leaderboard"),
    sample!("shop"),
    sample!("red-envelope"),
    sample!("payment-probe"),
    sample!("support-chat"),
];

/// Installs every sample as released by the platform, unless its exact
/// component is already the app's release.
pub async fn install(platform: &Platform) -> anyhow::Result<()> {
    for sample in SAMPLES {
        let appid: AppId = sample.appid.parse().map_err(anyhow::Error::msg)?;
        platform
            .install_sample(&appid, sample.manifest, sample.component)
            .await
            .map_err(|err| anyhow::anyhow!("installing sample {}: {err}", sample.appid))?;
    }
    Ok(())
}
