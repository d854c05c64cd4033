using IoMux.Conformance;

namespace IoMux.Tests;

/// <summary>
/// The one conformance fixture: every row of docs/SEMANTICS.md (ScenarioCatalog) against every backend and
/// test variant, unchanged. A backend this OS cannot run shows as Skipped with its reason; a row that cannot
/// apply to a backend (select and 10 000 descriptors) is Skipped with its reason too, never passed.
/// </summary>
[TestFixtureSource(nameof(Backends))]
public sealed class ConformanceTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    public static IEnumerable<TestCaseData> Scenarios =>
        ScenarioCatalog.All.Select(s => new TestCaseData(s.Id).SetArgDisplayNames(s.Id).SetDescription($"{s.Title} => {s.Expectation}"));

    [OneTimeSetUp]
    public void RequireBackend()
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore($"{backend.Name} cannot run on this OS: {reason}");
    }

    [TestCaseSource(nameof(Scenarios))]
    public void Scenario(string id)
    {
        var scenario = ScenarioCatalog.Get(id);
        Models.ModelTargets.ClearRefusals();
        var result = ConformanceRunner.Run(scenario, backend);
        // A modelled kernel refused a change for a reason other than the caller's own descriptor (an unknown
        // filter, above all): on that OS the backend would fail where the model let the scenario go on.
        Assert.That(Models.ModelTargets.Refusals, Is.Empty, $"{id} on {backend.Name}: the modelled kernel refused what the backend sent");
        switch (result.Verdict)
        {
            case Verdict.Fail:
                Assert.Fail($"{id} ({scenario.Title}) on {backend.Name}: {result.Message}\nexpected: {scenario.Expectation}");
                break;
            case Verdict.Skip:
                Assert.Ignore(result.Message);
                break;
        }
    }
}
