"""Generated from proto/otel_agent_eval/v1/evaluation.proto by scripts/gen-proto.sh: do not edit."""
