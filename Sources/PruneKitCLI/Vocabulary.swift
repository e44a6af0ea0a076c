import ArgumentParser
import PruneKit

// One vocabulary across commands: an option has the same name, values and default
// everywhere, and enumerations are `ExpressibleByArgument`, so `--help` lists their values
// and shells complete them.

/// `--format table|json` (inspect, plugins, score).
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// `--optimizer` of train.
enum OptimizerName: String, ExpressibleByArgument, CaseIterable {
    case sgd, adam
}

/// `--lr-schedule` of train: how the learning rate decays (a pruning `--schedule` is a plugin).
enum DecayName: String, ExpressibleByArgument, CaseIterable {
    case cosine, step, constant
}

extension ResidualPolicy: @retroactive ExpressibleByArgument {}
extension GroupScoreReduction: @retroactive ExpressibleByArgument {}

/// `--scope global|layer`.
enum ScopeName: String, ExpressibleByArgument, CaseIterable {
    case global, layer
    var scope: SelectionSettings.Scope { self == .global ? .global : .perLayer }
}

/// Training images held out for validation by every command that trains or finetunes
/// (train, prune, and the harness's `baseline.validation-images`): one default everywhere.
let defaultValidationImages = 500
