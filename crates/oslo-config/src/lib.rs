//! oslo.config-compatible configuration for nova.conf (placeholder; being written).
