import ArgumentParser
import Foundation
import PruneKit

extension NumPy.Layout: ExpressibleByArgument {}

/// How your own data (`--dataset` a path: an .npz file, a folder of .npy files, an image
/// folder) is read: one set of options, the same in every command that reads data.
struct DataSourceFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Your own data: per-channel normalisation, imagenet, none, or MEANS/STDS on the 0…1 scale (default: imagenet for an image folder, none for arrays).", valueName: "imagenet|none|m,m,m/s,s,s"))
    var normalize: String?
    @Option(help: "Image folders: the shorter side after resizing, for evaluation (default: 256).")
    var imageSize: Int?
    @Option(help: "Image folders: the side of the square crop the model sees (default: 224).")
    var crop: Int?
    @Option(help: "NumPy images: nchw, nhwc, or auto (from the shape; default).")
    var layout: NumPy.Layout?
    @Option(help: ArgumentHelp("NumPy: the names of the four arrays (default: x_train,y_train,x_test,y_test).", valueName: "x,y,x,y"))
    var arrays: String?
    @Option(help: "Image folders: the largest fraction of a split's files that may be unreadable (skipped with a warning; default: 0.01).")
    var maxUnreadable: Double?

    /// Whether no option was given.
    var isEmpty: Bool { normalize == nil && imageSize == nil && crop == nil && layout == nil && arrays == nil && maxUnreadable == nil }

    func validate() throws {
        try reportingErrors { _ = try options() }
    }

    /// The options given, over `base` (the defaults, or what a model was trained with).
    func options(over base: DataSourceOptions = DataSourceOptions()) throws -> DataSourceOptions {
        var o = base
        if let normalize { o.normalize = normalize }
        if let imageSize { o.imageSize = imageSize }
        if let crop { o.crop = crop }
        if let layout { o.layout = layout }
        if let arrays { o.arrayNames = try NumPy.ArrayNames.parse(arrays) }
        if let maxUnreadable { o.maxUnreadableFraction = maxUnreadable }
        try o.validate()
        return o
    }
}

/// Prints what loading the data found (files left out, small images) as warnings.
func printWarnings(_ splits: DataSplits) {
    for w in splits.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
}
