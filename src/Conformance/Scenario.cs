namespace IoMux.Conformance;

/// <summary>One row of the contract table (docs/SEMANTICS.md): an id, what is done, what every backend must report.</summary>
/// <param name="Id">The row id (H1, M3, F2 ... as in the research catalogue; X for additions, E for bad input).</param>
/// <param name="Title">What happens.</param>
/// <param name="Expectation">What every backend reports, with any allowance.</param>
/// <param name="Run">The scenario; throws <see cref="ConformanceFailure"/> on a violation, <see cref="ScenarioNotApplicable"/> to skip.</param>
public sealed record Scenario(string Id, string Title, string Expectation, Action<ScenarioContext> Run)
{
    /// <inheritdoc />
    public override string ToString() => Id;
}

/// <summary>A backend broke the contract.</summary>
public sealed class ConformanceFailure(string message) : Exception(message);

/// <summary>The scenario cannot apply to this backend (e.g. select and 10 000 descriptors); reported as skipped with the reason.</summary>
public sealed class ScenarioNotApplicable(string reason) : Exception(reason);

/// <summary>The outcome of one scenario on one backend.</summary>
public enum Verdict
{
    /// <summary>The backend did what the row says.</summary>
    Pass,
    /// <summary>It did not.</summary>
    Fail,
    /// <summary>The row or the backend cannot run here; the message says why.</summary>
    Skip,
}

/// <summary>A verdict with its message.</summary>
/// <param name="Verdict">Pass, fail or skip.</param>
/// <param name="Message">Why it failed or was skipped; empty on pass.</param>
/// <param name="Elapsed">How long it took.</param>
public readonly record struct ScenarioResult(Verdict Verdict, string Message, TimeSpan Elapsed);

/// <summary>Runs scenarios against a backend provider.</summary>
public static class ConformanceRunner
{
    /// <summary>Runs <paramref name="scenario"/> against <paramref name="backend"/> and never throws.</summary>
    public static ScenarioResult Run(Scenario scenario, BackendProvider backend)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        if (backend.UnsupportedReason() is { } reason)
            return new ScenarioResult(Verdict.Skip, $"{backend.Name} cannot run here: {reason}", started.Elapsed);
        try
        {
            using var context = new ScenarioContext(backend);
            scenario.Run(context);
            return new ScenarioResult(Verdict.Pass, "", started.Elapsed);
        }
        catch (ScenarioNotApplicable e)
        {
            return new ScenarioResult(Verdict.Skip, e.Message, started.Elapsed);
        }
        catch (Exception e)
        {
            var message = e is ConformanceFailure ? e.Message : $"{e.GetType().Name}: {e.Message}";
            return new ScenarioResult(Verdict.Fail, message, started.Elapsed);
        }
    }

    /// <summary>The backends `iomux check` runs against: every backend of this build and the variants that exercise
    /// emulated paths (millisecond epoll, derived read hangup). The models of other OSes' kernels are test code
    /// (tests/IoMux.Models) and run in the NUnit suite.</summary>
    public static IReadOnlyList<BackendProvider> Targets { get; } = [.. BackendCatalog.All, .. BackendCatalog.TestVariants];
}
