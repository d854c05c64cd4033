using IoMux.Fuzz;

namespace IoMux.Tests;

/// <summary>
/// Replays every fuzz corpus entry and every minimized regression (tests/IoMux.Fuzz/corpus/TARGET and
/// regressions/TARGET) through the same target code afl-fuzz runs (the target files are linked in), without
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

    /// <summary>The targets bound themselves (http-connection runs in real time, at most 2.5 s a run); the wait on
    /// the token bounds the test regardless, so a target that hangs is a failure naming its input, not a stuck run.</summary>
    [TestCaseSource(nameof(Inputs))]
    [CancelAfter(10_000)]
    public void InputKeepsTheTargetsProperties(string target, string relativePath, CancellationToken token)
    {
        byte[] input = File.ReadAllBytes(Path.Combine(TestProcesses.RepositoryRoot(), "tests", "IoMux.Fuzz", relativePath));
        var run = Task.Factory.StartNew(() => _targets.Run(target, input), token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            run.Wait(token);
        }
        catch (Exception e) when (e is OperationCanceledException or AggregateException)
        {
            // judged below: still running at the deadline, or the target's own exception
        }
        Assert.That(run.IsCompleted, Is.True, $"{relativePath}: the {target} target still ran at the test's deadline");
        Assert.That(run.Exception?.InnerException, Is.Null, relativePath);
    }
}
