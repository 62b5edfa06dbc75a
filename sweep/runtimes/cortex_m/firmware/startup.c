/* Reset handler of the emulated board: what a real board's startup file does
 * before main(), and nothing board-specific (no clocks, no interrupts).
 *
 * The emulator starts here with SP already at _stack_top. The FPU is switched
 * on through CPACR when the build uses it, exactly as CMSIS SystemInit() does,
 * so a hard-float build faults on neither real silicon nor the emulator.
 */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_top;
typedef void (*init_fn)(void);
extern init_fn __preinit_array_start[], __preinit_array_end[];
extern init_fn __init_array_start[], __init_array_end[];
extern int main(void);
void Reset_Handler(void);

/* The host stops the emulator when execution reaches this function. */
__attribute__((noinline, used)) void sweep_done(void) {
  for (;;) {
  }
}

__attribute__((section(".isr_vector"), used)) static const void* const vector_table[2] = {
    &_stack_top, (const void*)Reset_Handler};

void Reset_Handler(void) {
#if defined(__ARM_FP)
  *(volatile uint32_t*)0xE000ED88u |= (0xFu << 20); /* CPACR: CP10, CP11 full access */
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  /* C++ static constructors (newlib's __libc_init_array also wants crti's _init). */
  for (init_fn* fn = __preinit_array_start; fn < __preinit_array_end; ++fn) (*fn)();
  for (init_fn* fn = __init_array_start; fn < __init_array_end; ++fn) (*fn)();
  main();
  sweep_done();
}
