import Dispatch

/// Measured inference latency of a model: wall-clock seconds per forward pass of one batch.
public struct LatencyMeasurement: Sendable, Equatable {
    /// Examples per forward pass.
    public var batchSize: Int
    /// Untimed forward passes run first (caches, allocator, thread pool).
    public var warmup: Int
    /// PruneKit's threads during the measurement (``Parallel/threadCount``).
    public var threads: Int
    /// Seconds of each timed forward pass, in the order they ran.
    public var samples: [Double]

    public init(batchSize: Int, warmup: Int, threads: Int, samples: [Double]) {
        self.batchSize = batchSize; self.warmup = warmup; self.threads = threads; self.samples = samples
    }

    /// Timed runs.
    public var runs: Int { samples.count }
    /// The median seconds per batch.
    public var median: Double { percentile(50) }
    /// The 10th percentile of seconds per batch (a fast run).
    public var p10: Double { percentile(10) }
    /// The 90th percentile of seconds per batch (a slow run).
    public var p90: Double { percentile(90) }
    /// Examples per second at the median: `batchSize / median`.
    public var throughput: Double { median > 0 ? Double(batchSize) / median : .infinity }

    /// The `q`-th percentile (0…100) of ``samples``, interpolating linearly between the two
    /// nearest ranks (NumPy's default, `numpy.percentile(samples, q)`); 0 when there are no samples.
    public func percentile(_ q: Double) -> Double {
        let s = samples.sorted()
        guard !s.isEmpty else { return 0 }
        let position = min(max(q, 0), 100) / 100 * Double(s.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(lower + 1, s.count - 1)
        return s[lower] + (s[upper] - s[lower]) * (position - Double(lower))
    }
}

extension Model {
    /// Measures inference latency: forward passes of one fixed random batch, timed one by one.
    ///
    /// The model runs in ``ForwardMode/inference`` (running statistics, no dropout, nothing
    /// recorded for a backward pass); its mode, ``forwardObserver`` and ``profile`` are
    /// set aside during the measurement and restored afterwards. The input is
    /// `[batchSize] + inputShape`, drawn from N(0, 1) with a fixed seed, made once before
    /// the clock starts. `warmup` passes run first and are discarded. Masks change nothing
    /// here: zeros are multiplied like any other weight, so only physically removed
    /// channels make a model faster. Use a release build for figures worth reporting.
    ///
    /// - Parameters:
    ///   - batchSize: examples per forward pass (≥ 1); report 1 and 64.
    ///   - runs: timed passes (≥ 1); the median is over these.
    ///   - warmup: untimed passes before them (≥ 0).
    /// - Returns: every timed pass's seconds, with median, p10 and p90.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a batch size or run count below 1
    ///   or a negative warm-up.
    /// Cost: `runs + warmup` forward passes, and one input batch of memory.
    public func measureLatency(batchSize: Int = 1, runs: Int = 20, warmup: Int = 3) throws -> LatencyMeasurement {
        guard batchSize >= 1 else {
            throw PruneKitError(.invalidArgument, "a latency measurement needs a batch size of at least 1, got \(batchSize)",
                                hint: "measure at batch size 1 (one request) and 64 (throughput)")
        }
        guard runs >= 1 else {
            throw PruneKitError(.invalidArgument, "a latency measurement needs at least 1 timed run, got \(runs)",
                                hint: "use 20 or more runs for a stable median")
        }
        guard warmup >= 0 else {
            throw PruneKitError(.invalidArgument, "the warm-up run count must be 0 or more, got \(warmup)")
        }
        var rng = RandomGenerator(seed: 0, stream: "latency")
        let input = Tensor.randomNormal([batchSize] + inputShape, using: &rng)

        let (savedMode, savedObserver, savedProfile) = (mode, forwardObserver, profile)
        mode = .inference
        forwardObserver = nil
        profile = nil
        defer { mode = savedMode; forwardObserver = savedObserver; profile = savedProfile }

        for _ in 0..<warmup { _ = forward(input) }
        var samples: [Double] = []
        samples.reserveCapacity(runs)
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = forward(input)
            let t1 = DispatchTime.now().uptimeNanoseconds
            withExtendedLifetime(y) {}
            samples.append(Double(t1 - t0) * 1e-9)
        }
        return LatencyMeasurement(batchSize: batchSize, warmup: warmup, threads: Parallel.threadCount, samples: samples)
    }
}
