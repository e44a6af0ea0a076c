// libffi, for calling C criteria whose signatures are only known at run time
// (Plugins/Foreign). The helpers spare Swift from taking the address of C globals
// and from casting a dlsym result to a function pointer type.
#include <ffi.h>

static inline ffi_type *prunekit_ffi_type_pointer(void) { return &ffi_type_pointer; }
static inline ffi_type *prunekit_ffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *prunekit_ffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *prunekit_ffi_type_double(void) { return &ffi_type_double; }
static inline ffi_type *prunekit_ffi_type_float(void) { return &ffi_type_float; }
static inline ffi_type *prunekit_ffi_type_void(void) { return &ffi_type_void; }

static inline ffi_status prunekit_ffi_prep_cif(ffi_cif *cif, unsigned int nargs, ffi_type *rtype, ffi_type **atypes) {
    return ffi_prep_cif(cif, FFI_DEFAULT_ABI, nargs, rtype, atypes);
}

/// Calls `fn` (a dlsym result) as described by `cif`. `rvalue` must hold at least
/// sizeof(ffi_arg) bytes: libffi widens integral return values to a full register.
static inline void prunekit_ffi_call(ffi_cif *cif, void *fn, void *rvalue, void **avalues) {
    ffi_call(cif, (void (*)(void))fn, rvalue, avalues);
}
