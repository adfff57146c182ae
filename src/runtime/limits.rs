//! Per-call resource limits and the limiter that enforces them for a whole instance.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one call of a mini-program may consume. Every field is on by default;
/// see [`Limits::platform_default`] for the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Instructions the call may execute, counted as wasmtime fuel.
    /// Defaults to 500 million.
    pub fuel: u64,
    /// Wall-clock time for the whole call, host calls included, in
    /// milliseconds. Defaults to 1,000 ms.
    pub deadline_ms: u64,
    /// Linear memory, summed over every memory of the instance, in bytes.
    /// Defaults to 64 MiB.
    pub memory_bytes: u64,
    /// Table elements, summed over every table of the instance. Defaults to 20,000.
    pub table_elements: u64,
    /// Core instances a component may create. Defaults to 32.
    pub instances: u32,
}

impl Limits {
    /// The limits a call gets unless its app was given others.
    pub const fn platform_default() -> Self {
        Limits {
            fuel: 500_000_000,
            deadline_ms: 1_000,
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
        }
    }

    /// The most the platform lets any app ask for.
    pub const fn platform_maximum() -> Self {
        Limits {
            fuel: 20_000_000_000,
            deadline_ms: 30_000,
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            instances: 64,
        }
    }

    /// The deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Returns the first field in which `self` asks for more than `maximum`
    /// allows or for nothing at all, naming the field.
    pub fn check_within(&self, maximum: &Limits) -> Result<(), String> {
        let fields: [(&str, u64, u64); 5] = [
            ("fuel", self.fuel, maximum.fuel),
            ("deadline_ms", self.deadline_ms, maximum.deadline_ms),
            ("memory_bytes", self.memory_bytes, maximum.memory_bytes),
            (
                "table_elements",
                self.table_elements,
                maximum.table_elements,
            ),
            ("instances", self.instances.into(), maximum.instances.into()),
        ];
        for (name, asked, max) in fields {
            if asked == 0 {
                return Err(format!("{name} must be greater than zero"));
            }
            if asked > max {
                return Err(format!("{name} {asked} exceeds the platform maximum {max}"));
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::platform_default()
    }
}

/// Raised (as a trap) when an instance tries to grow its memory past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {asked} bytes in all)")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub asked: u64,
}

/// Linear memories one call's instance may define, over all its core
/// instances. The instance pool holds this many for every call slot, so no
/// call can take another's; a component that needs more is refused when it
/// is compiled, at upload. Programs have one or two.
pub const MEMORIES_PER_CALL: u32 = 4;

/// Tables one call's instance may define, likewise (wit-component adds a
/// shim's table to the program's own).
pub const TABLES_PER_CALL: u32 = 8;

/// Enforces [`Limits`] on one store: memory and table growth are summed over
/// the whole instance, not counted per memory or per table, so a component
/// cannot multiply its allowance by declaring more memories.
#[derive(Debug)]
pub struct InstanceLimiter {
    memory_cap: u64,
    table_cap: u64,
    instances: usize,
    memory_in_use: u64,
    tables_in_use: u64,
    peak_memory: u64,
}

impl InstanceLimiter {
    pub fn new(limits: &Limits) -> Self {
        InstanceLimiter {
            memory_cap: limits.memory_bytes,
            table_cap: limits.table_elements,
            instances: limits.instances as usize,
            memory_in_use: 0,
            tables_in_use: 0,
            peak_memory: 0,
        }
    }

    /// The most linear memory the instance held at once, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.peak_memory
    }
}

impl wasmtime::ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let asked = self.memory_in_use + (desired - current) as u64;
        if asked > self.memory_cap {
            // An error here traps the guest at once: a program that wants more
            // memory than it was granted cannot do its job, and a clear outcome
            // beats an allocator abort deep inside the guest.
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_cap,
                asked,
            }));
        }
        self.memory_in_use = asked;
        self.peak_memory = self.peak_memory.max(asked);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let asked = self.tables_in_use + (desired - current) as u64;
        if asked > self.table_cap {
            return Ok(false);
        }
        self.tables_in_use = asked;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        TABLES_PER_CALL as usize
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_CALL as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_is_capped_across_all_memories_of_an_instance() {
        let mut limiter = InstanceLimiter::new(&Limits {
            memory_bytes: 100,
            ..Limits::platform_default()
        });
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        // A second memory starts at zero but shares the same cap.
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        let err = limiter.memory_growing(40, 41, None).unwrap_err();
        assert!(err.is::<MemoryLimitExceeded>());
        assert_eq!(limiter.peak_memory(), 100);
    }

    #[test]
    fn limits_outside_platform_maximum_are_refused_naming_the_field() {
        let max = Limits::platform_maximum();
        let too_much = Limits {
            memory_bytes: max.memory_bytes + 1,
            ..Limits::platform_default()
        };
        let err = too_much.check_within(&max).unwrap_err();
        assert!(err.contains("memory_bytes"), "{err}");
        let zero = Limits {
            fuel: 0,
            ..Limits::platform_default()
        };
        assert!(zero.check_within(&max).unwrap_err().contains("fuel"));
        assert!(Limits::platform_default().check_within(&max).is_ok());
    }
}
