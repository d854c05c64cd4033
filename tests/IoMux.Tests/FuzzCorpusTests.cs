using IoMux.Fuzz;

namespace IoMux.Tests;

/// <summary>
/// Replays every fuzz corpus entry and every minimized regression (tests/IoMux.Fuzz/corpus/TARGET and
/// regressions/TARGET) through the same target code afl-fuzz runs (Targets.cs is linked in), without
/// instrumentation: a fix that regresses, or a property that an old input now breaks, fails here on every
/// build, not only during a campaign (docs/reliability/fuzzing.md).
/// </summary>
[TestFixture]
public sealed class FuzzCorpusTests
{
    private FuzzTargets _targets = null!;

    [OneTimeSetUp]
    public void CreateTargets() => _targets = new FuzzTargets();

    [OneTimeTearDown]
    public void DisposeTargets() => _targets.Dispose();

    public static IEnumerable<TestCaseData> Inputs()
    {
        string fuzz = Path.Combine(TestProcesses.RepositoryRoot(), "tests", "IoMux.Fuzz");
        foreach (string kind in new[] { "corpus", "regressions" })
        {
            foreach (string target in FuzzTargets.Names)
            {
                string dir = Path.Combine(fuzz, kind, target);
                if (!Directory.Exists(dir))
                    continue;
                foreach (string file in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
                    yield return new TestCaseData(target, Path.GetRelativePath(fuzz, file)).SetName($"{kind}/{target}/{Path.GetFileName(file)}");
            }
        }
    }

    [Test]
    public void EveryTargetHasASeedCorpus()
    {
        string fuzz = Path.Combine(TestProcesses.RepositoryRoot(), "tests", "IoMux.Fuzz");
        foreach (string target in FuzzTargets.Names)
        {
            Assert.That(Directory.GetFiles(Path.Combine(fuzz, "corpus", target)), Is.Not.Empty, $"corpus/{target}");
            Assert.That(File.Exists(Path.Combine(fuzz, "dict", target + ".dict")), Is.True, $"dict/{target}.dict");
        }
    }

    [TestCaseSource(nameof(Inputs))]
    [CancelAfter(5000)]
    public void InputKeepsTheTargetsProperties(string target, string relativePath)
    {
        byte[] input = File.ReadAllBytes(Path.Combine(TestProcesses.RepositoryRoot(), "tests", "IoMux.Fuzz", relativePath));
        Assert.DoesNotThrow(() => _targets.Run(target, input), relativePath);
    }
}
