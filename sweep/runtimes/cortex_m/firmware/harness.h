// What the two harnesses share: the per-model firmware (main.cc, the bundle as
// shipped) and the per-CPU runner (runner.cc, the model given at run time).
//
// Both talk to the host (sweep/runtimes/cortex_m/protocol.py) only through memory:
//
//   - the I/O block at kIoBase: the host fills in the image count and the
//     images; the firmware writes back the status, the tensor facts, the
//     outputs and anything TFLM logged;
//   - sweep_invoke_begin()/sweep_invoke_end(): empty functions called around
//     every Invoke(); the host counts the instructions executed between them.
//
// RunModel() is the sequence both run once the interpreter exists: one warm-up
// invoke (first-call work, e.g. lazy init), one counted invoke of image 0, then
// one invoke per image for the outputs. Being the same source in both, it is the
// same code around the counted Invoke(), so the two count the same instructions.
#ifndef SWEEP_FIRMWARE_HARNESS_H_
#define SWEEP_FIRMWARE_HARNESS_H_

#include <stdint.h>
#include <string.h>

#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr uint32_t kMagic = 0x4f495753u;  // "SWIO"
constexpr uintptr_t kIoBase = 0x60000000u;
constexpr uint32_t kLogBytes = 2048;

enum Status : uint32_t {
  kRunning = 0,
  kOk = 1,
  kBadHost = 2,
  kBadModel = 3,
  kNoOps = 4,
  kAllocateFailed = 5,
  kBadTensors = 6,
  kTooManyImages = 7,
  kInvokeFailed = 8,
  kBadImageSize = 9,
};

// Layout shared with sweep/runtimes/cortex_m/protocol.py (IO_FIELDS).
struct SweepIo {
  uint32_t magic;             // host
  uint32_t num_images;        // host
  uint32_t inputs_offset;     // host: images, input_bytes each
  uint32_t outputs_offset;    // host: outputs, output_bytes each
  uint32_t io_bytes;          // host: size of the whole block
  uint32_t image_bytes;       // host: bytes per image
  uint32_t status;            // firmware
  uint32_t input_bytes;       // firmware
  uint32_t output_bytes;      // firmware
  uint32_t input_type;        // firmware: TfLiteType
  uint32_t output_type;       // firmware: TfLiteType
  uint32_t arena_bytes;       // firmware: the arena compiled in
  uint32_t arena_used_bytes;  // firmware: what TFLM allocated in it
  uint32_t failed_image;      // firmware
  uint32_t log_len;           // firmware
  char log[kLogBytes];        // firmware: TFLM's own messages
};

volatile SweepIo* const io = reinterpret_cast<volatile SweepIo*>(kIoBase);

void LogToHost(const char* s) {
  uint32_t n = io->log_len;
  while (*s != '\0' && n + 1 < kLogBytes) io->log[n++] = *s++;
  if (n + 1 < kLogBytes) io->log[n++] = '\n';
  io->log_len = n;
}

uint32_t Fail(Status status) {
  io->status = status;
  return status;
}

}  // namespace

extern "C" {
__attribute__((noinline, used)) void sweep_invoke_begin(void) { __asm volatile("" ::: "memory"); }
__attribute__((noinline, used)) void sweep_invoke_end(void) { __asm volatile("" ::: "memory"); }
}

static TfLiteStatus CountedInvoke(tflite::MicroInterpreter& interpreter) {
  sweep_invoke_begin();
  TfLiteStatus status = interpreter.Invoke();
  sweep_invoke_end();
  return status;
}

// Allocates, checks the tensors against the host's images, and runs the sequence
// above; returns main()'s exit status (0, or the failure's Status).
static int RunModel(tflite::MicroInterpreter& interpreter) {
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail(kAllocateFailed);
  io->arena_used_bytes = interpreter.arena_used_bytes();

  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input == nullptr || output == nullptr) return Fail(kBadTensors);
  io->input_bytes = input->bytes;
  io->output_bytes = output->bytes;
  io->input_type = input->type;
  io->output_type = output->type;

  if (io->image_bytes != input->bytes) return Fail(kBadImageSize);
  const uint32_t n = io->num_images;
  const uint64_t in_end = io->inputs_offset + uint64_t{n} * input->bytes;
  const uint64_t out_end = io->outputs_offset + uint64_t{n} * output->bytes;
  if (n == 0 || in_end > io->outputs_offset || out_end > io->io_bytes) {
    return Fail(kTooManyImages);
  }
  const uint8_t* images = reinterpret_cast<const uint8_t*>(kIoBase + io->inputs_offset);
  uint8_t* outputs = reinterpret_cast<uint8_t*>(kIoBase + io->outputs_offset);

  // Warm-up, then the counted invoke: both on image 0.
  for (int round = 0; round < 2; ++round) {
    memcpy(input->data.raw, images, input->bytes);
    if (CountedInvoke(interpreter) != kTfLiteOk) {
      io->failed_image = 0;
      return Fail(kInvokeFailed);
    }
  }
  for (uint32_t i = 0; i < n; ++i) {
    memcpy(input->data.raw, images + i * input->bytes, input->bytes);
    if (CountedInvoke(interpreter) != kTfLiteOk) {
      io->failed_image = i;
      return Fail(kInvokeFailed);
    }
    memcpy(outputs + i * output->bytes, output->data.raw, output->bytes);
  }
  io->status = kOk;
  return 0;
}

#endif  // SWEEP_FIRMWARE_HARNESS_H_
