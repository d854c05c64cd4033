namespace IoMux.Conformance;

/// <summary>Every row of docs/SEMANTICS.md, in table order. The NUnit suite and `iomux check` both read this list.</summary>
public static class ScenarioCatalog
{
    /// <summary>All scenarios.</summary>
    public static IReadOnlyList<Scenario> All { get; } =
    [
        .. HangupScenarios.All,
        .. ModeScenarios.All,
        .. LifetimeScenarios.All,
        .. MisuseScenarios.All,
        .. WakeAndTimeoutScenarios.All,
        .. BadInputScenarios.All,
    ];

    /// <summary>The scenario with <paramref name="id"/>.</summary>
    public static Scenario Get(string id) => All.First(s => s.Id == id);
}
