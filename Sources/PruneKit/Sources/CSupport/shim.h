// glibc declarations that the Swift Glibc module does not export.
#include <malloc.h>
