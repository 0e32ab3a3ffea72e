//! Where a model runs. Only the backends compiled into this build are available.

use crate::error::{Error, ErrorCode, Result};
use candle_core::Device;

/// A device as users name it: `cpu`, `cuda` / `cuda:N`, `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda(usize),
    Metal,
}

/// Devices this build can run on, e.g. `["cpu"]` or `["cpu", "cuda"]`.
pub fn available_devices() -> Vec<&'static str> {
    let mut devices = vec!["cpu"];
    if cfg!(feature = "cuda") {
        devices.push("cuda");
    }
    if cfg!(feature = "metal") {
        devices.push("metal");
    }
    devices
}

impl DeviceKind {
    pub fn parse(name: &str) -> Result<Self> {
        let kind = match name {
            "cpu" => DeviceKind::Cpu,
            "metal" => DeviceKind::Metal,
            "cuda" => DeviceKind::Cuda(0),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => DeviceKind::Cuda(n),
                None => {
                    return Err(Error::new(
                        ErrorCode::UnsupportedDevice,
                        format!("unknown device '{other}'; use cpu, cuda, cuda:N or metal"),
                    ))
                }
            },
        };
        Ok(kind)
    }

    pub fn name(&self) -> String {
        match self {
            DeviceKind::Cpu => "cpu".into(),
            DeviceKind::Cuda(n) => format!("cuda:{n}"),
            DeviceKind::Metal => "metal".into(),
        }
    }

    /// Opens the device; a backend that was not compiled in is `UNSUPPORTED_DEVICE`.
    pub fn open(&self) -> Result<Device> {
        let unavailable = |e: candle_core::Error| {
            Error::new(
                ErrorCode::UnsupportedDevice,
                format!(
                    "device {} is not available in this build ({e}); available: {}",
                    self.name(),
                    available_devices().join(", ")
                ),
            )
        };
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda(n) => Device::new_cuda(*n).map_err(unavailable),
            DeviceKind::Metal => Device::new_metal(0).map_err(unavailable),
        }
    }
}
