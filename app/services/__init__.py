"""Async orchestration: owns tasks and lifetimes; no Qt."""
