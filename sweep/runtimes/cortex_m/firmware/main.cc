// Harness that runs a sweep deploy bundle with TFLM on an emulated Cortex-M.
//
// It is the firmware a user would flash, minus the board: the model array,
// the op resolver and the arena size all come from the bundle
// (model_data.h/.cc, micro_op_resolver.h), so what is measured is what ships.
// Its flash and RAM are the figures reported; the per-CPU runner (runner.cc)
// counts the same instructions without a build per model. The sequence and the
// host protocol are in harness.h.

#include "micro_op_resolver.h"
#include "model_data.h"
#include "harness.h"

#ifndef SWEEP_ARENA_BYTES
#define SWEEP_ARENA_BYTES kTensorArenaSize
#endif

namespace {
alignas(16) uint8_t tensor_arena[SWEEP_ARENA_BYTES];
}  // namespace

int main(void) {
  RegisterDebugLogCallback(LogToHost);
  io->status = kRunning;
  io->arena_bytes = sizeof(tensor_arena);
  if (io->magic != kMagic) return Fail(kBadHost);

  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail(kBadModel);

  ModelOpResolver resolver;  // locals, not statics: nothing to register with atexit
  if (RegisterModelOps(resolver) != kTfLiteOk) return Fail(kNoOps);

  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  return RunModel(interpreter);
}
