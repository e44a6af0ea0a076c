// The PruneKit plugin ABI tag: a fixed-layout record that every plugin library
// carries in the ELF section `.prunekit_abi`, so the host can check a plugin's SDK
// version and compiler *before* it maps the file (see Plugins/PLUGINS.md in the SDK).
#ifndef PRUNEKIT_ABI_H
#define PRUNEKIT_ABI_H

#include <stdint.h>

/// The SDK version the tag records. Keep equal to `SDKVersion.major/minor` in Swift
/// (a test checks that they agree).
#define PRUNEKIT_SDK_MAJOR 1
#define PRUNEKIT_SDK_MINOR 0

/// The ELF section that holds the tag.
#define PRUNEKIT_ABI_SECTION ".prunekit_abi"
/// The first 8 bytes of the tag.
#define PRUNEKIT_ABI_MAGIC "PKABITAG"
/// The version of the tag's own layout.
#define PRUNEKIT_ABI_FORMAT 1
/// Bytes reserved for the compiler identity (NUL-terminated, zero-padded).
#define PRUNEKIT_ABI_COMPILER_SIZE 232

/// The tag: 256 bytes, little-endian, no padding.
///
///     offset  size  field
///          0     8  magic     "PKABITAG"
///          8     4  format    1
///         12     4  sdk_major
///         16     4  sdk_minor
///         20     4  reserved  0
///         24   232  compiler  __clang_version__ of the clang that compiled the tag,
///                             NUL-terminated, zero-padded
typedef struct prunekit_abi_tag {
    char magic[8];
    uint32_t format;
    uint32_t sdk_major;
    uint32_t sdk_minor;
    uint32_t reserved;
    char compiler[PRUNEKIT_ABI_COMPILER_SIZE];
} prunekit_abi_tag;

_Static_assert(sizeof(prunekit_abi_tag) == 256, "the ABI tag is 256 bytes");

/// The tag compiled into this binary (the host's own, when called from the SDK).
const prunekit_abi_tag *prunekit_abi_own_tag(void);

#endif
