//! The upload's multipart body: the manifest, then the component streamed in
//! chunks under a progress bar that advances as the request takes each chunk.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::multipart::{Form, Part};

/// Bytes handed to the request at a time: 64 KiB.
const CHUNK_BYTES: usize = 64 << 10;

/// The `manifest` and `component` parts of an upload, read from their files.
/// The manifest must parse as JSON here, so a typo fails before any upload;
/// it is sent as written.
pub fn form(manifest: &Path, component: &Path, progress: &ProgressBar) -> anyhow::Result<Form> {
    let manifest_text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading the manifest {}", manifest.display()))?;
    serde_json::from_str::<serde_json::Value>(&manifest_text)
        .with_context(|| format!("the manifest {} is not JSON", manifest.display()))?;
    let bytes = Bytes::from(
        std::fs::read(component)
            .with_context(|| format!("reading the component {}", component.display()))?,
    );
    let length = bytes.len() as u64;
    progress.set_length(length);
    let file_name = component.file_name().map_or_else(
        || "component.wasm".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let manifest_part = Part::text(manifest_text).mime_str("application/json")?;
    let component_part = Part::stream_with_length(
        reqwest::Body::wrap_stream(chunks(bytes, progress.clone())),
        length,
    )
    .file_name(file_name)
    .mime_str("application/wasm")?;
    Ok(Form::new()
        .part("manifest", manifest_part)
        .part("component", component_part))
}

/// `bytes` as a stream of chunks; each advances `progress` when the request
/// polls it, that is, as the body is being sent.
fn chunks(
    bytes: Bytes,
    progress: ProgressBar,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let pieces: Vec<Bytes> = (0..bytes.len())
        .step_by(CHUNK_BYTES)
        .map(|start| bytes.slice(start..bytes.len().min(start + CHUNK_BYTES)))
        .collect();
    futures_util::stream::iter(pieces).map(move |piece| {
        progress.inc(piece.len() as u64);
        Ok(piece)
    })
}

/// A bar over the component's bytes, on stderr; hidden when stderr is not a
/// terminal, so scripts and logs get no control characters.
pub fn progress_bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let style = ProgressStyle::with_template("uploading [{wide_bar}] {bytes}/{total_bytes}")
        .expect("the template is valid")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(None, target).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bar_advances_by_each_chunk_as_it_is_taken() {
        let bytes = Bytes::from(vec![7u8; CHUNK_BYTES * 2 + 10]);
        let progress = ProgressBar::hidden();
        progress.set_length(bytes.len() as u64);
        let mut stream = Box::pin(chunks(bytes.clone(), progress.clone()));
        assert_eq!(progress.position(), 0, "nothing taken, nothing counted");
        let mut sent = Vec::new();
        let mut positions = Vec::new();
        while let Some(piece) = stream.next().await {
            sent.extend_from_slice(&piece.unwrap());
            positions.push(progress.position());
        }
        assert_eq!(sent, bytes);
        let expected = [CHUNK_BYTES, CHUNK_BYTES * 2, CHUNK_BYTES * 2 + 10].map(|n| n as u64);
        assert_eq!(positions, expected);
    }

    #[test]
    fn a_manifest_that_is_not_json_is_refused_before_uploading() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, component) = (dir.path().join("manifest.json"), dir.path().join("c.wasm"));
        std::fs::write(&manifest, "{name: 'oops'}").unwrap();
        std::fs::write(&component, b"\0asm").unwrap();
        let err = form(&manifest, &component, &ProgressBar::hidden()).unwrap_err();
        assert!(format!("{err:#}").contains("is not JSON"), "{err:#}");
    }
}
