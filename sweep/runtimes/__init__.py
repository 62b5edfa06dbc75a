"""The runtimes a model is measured on: LiteRT (desktop), tflite-micro, the Cortex-M emulator."""
