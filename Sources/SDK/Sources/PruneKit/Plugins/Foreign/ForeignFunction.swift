import CFFI
import Foundation

/// A C function found by `dlsym`, with its libffi call interface prepared once.
///
/// The library is never closed: criteria made from it may outlive any registry.
/// The call interface is read-only after preparation, so calls from several threads are safe.
final class ForeignFunction: @unchecked Sendable {
    private let cif: UnsafeMutablePointer<ffi_cif>
    private let argumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
    private let address: UnsafeMutableRawPointer
    let argumentCount: Int
    let returnType: ForeignReturnType

    /// Bytes per argument slot: every supported type (pointer, int64, int32, double, float) fits.
    static let slotSize = 8

    init(library: String, symbol: String, arguments: [ForeignArgumentType], returnType: ForeignReturnType,
         fail: (String, String?) -> PruneKitError) throws {
        _ = dlerror()
        guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL) else {
            var reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            if reason.hasPrefix(library + ": ") { reason.removeFirst(library.count + 2) } // dlerror repeats the path
            throw fail("cannot load the library \(library): \(reason)", nil)
        }
        _ = dlerror()
        guard let address = dlsym(handle, symbol) else {
            throw fail("symbol '\(symbol)' not found in \(library)",
                       "check the function's name, that it is not static, and that a C++ source declares it extern \"C\" (nm -D \(library))")
        }
        self.address = address
        self.returnType = returnType
        argumentCount = arguments.count
        argumentTypes = .allocate(capacity: max(1, arguments.count))
        for (i, type) in arguments.enumerated() {
            switch type {
            case .floatPointer, .constFloatPointer: argumentTypes[i] = prunekit_ffi_type_pointer()
            case .int64: argumentTypes[i] = prunekit_ffi_type_sint64()
            case .int32: argumentTypes[i] = prunekit_ffi_type_sint32()
            case .double: argumentTypes[i] = prunekit_ffi_type_double()
            case .float: argumentTypes[i] = prunekit_ffi_type_float()
            }
        }
        cif = .allocate(capacity: 1)
        let rtype = returnType == .int32 ? prunekit_ffi_type_sint32() : prunekit_ffi_type_void()
        let status = prunekit_ffi_prep_cif(cif, UInt32(arguments.count), rtype, argumentTypes)
        guard status == FFI_OK else {
            cif.deallocate(); argumentTypes.deallocate()
            throw fail("libffi cannot prepare a call to '\(symbol)' (status \(status.rawValue))", nil)
        }
    }

    deinit {
        cif.deallocate()
        argumentTypes.deallocate()
    }

    /// Calls the function with `slots` (``slotSize`` bytes per argument, each holding the
    /// argument's value in its C type) and returns its status (0 for a `void` function).
    func call(slots: UnsafeMutableRawPointer) -> Int32 {
        let values = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(1, argumentCount))
        defer { values.deallocate() }
        for i in 0..<argumentCount { values[i] = slots + i * ForeignFunction.slotSize }
        // libffi widens integral return values to a full register (ffi_arg).
        var result: ffi_arg = 0
        prunekit_ffi_call(cif, address, &result, values)
        return returnType == .int32 ? Int32(truncatingIfNeeded: result) : 0
    }
}
