// Defines the ABI tag in the section `.prunekit_abi` of whatever links this object:
// every plugin (through the static product PruneKitPluginABI) and the SDK itself.
// `used` keeps the compiler from dropping it; `retain` (SHF_GNU_RETAIN) keeps the
// linker's --gc-sections from dropping it.
#include "prunekit_abi.h"

#if defined(__has_attribute)
#  if __has_attribute(retain)
#    define PRUNEKIT_RETAIN __attribute__((retain))
#  endif
#endif
#ifndef PRUNEKIT_RETAIN
#  define PRUNEKIT_RETAIN
#endif

__attribute__((used)) PRUNEKIT_RETAIN __attribute__((section(PRUNEKIT_ABI_SECTION), aligned(8)))
static const prunekit_abi_tag prunekit_abi_tag_record = {
    PRUNEKIT_ABI_MAGIC,
    PRUNEKIT_ABI_FORMAT,
    PRUNEKIT_SDK_MAJOR,
    PRUNEKIT_SDK_MINOR,
    0,
    __clang_version__,
};

// Hidden: the SDK and each plugin have their own, and none is exported.
__attribute__((visibility("hidden")))
const prunekit_abi_tag *prunekit_abi_own_tag(void) {
    return &prunekit_abi_tag_record;
}
