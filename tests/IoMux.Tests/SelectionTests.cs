using IoMux.Interop;

namespace IoMux.Tests;

public sealed class SelectionTests
{
    private static BackendProvider Failing(string name) => new(BackendKind.Epoll, name, "fails on purpose", () => null,
        () => throw new PosixException("epoll_create1", Errno.EMFILE));

    private static BackendProvider Unsupported(string name) => new(BackendKind.Kqueue, name, "not here", () => "needs another OS",
        () => throw new InvalidOperationException("must not be created"));

    private static Func<string, string?> Env(string? backend) => name => name == BackendSelector.EnvironmentVariable ? backend : null;

    [Test]
    public void FallsThroughToTheNextBackendWhenOneFailsToInitialise()
    {
        var selector = new BackendSelector([Failing("broken"), BackendCatalog.Poll, BackendCatalog.Select], environment: Env(null), ignoreEnvironment: false);
        var selection = selector.Select();
        using var backend = selection.Backend;
        Assert.That(selection.Provider, Is.EqualTo(BackendCatalog.Poll));
        Assert.That(backend.Capabilities.Kind, Is.EqualTo(BackendKind.Poll));
        Assert.That(selection.Skipped.Single().Provider.Name, Is.EqualTo("broken"));
        Assert.That(selection.Skipped.Single().Reason, Does.Contain("EMFILE"));
    }

    [Test]
    public void PassesOverBackendsThisOsCannotRun()
    {
        var selector = new BackendSelector([Unsupported("kq"), BackendCatalog.Select], environment: Env(null), ignoreEnvironment: false);
        var selection = selector.Select();
        using var backend = selection.Backend;
        Assert.That(selection.Provider, Is.EqualTo(BackendCatalog.Select));
        Assert.That(selection.Skipped.Single().Reason, Is.EqualTo("needs another OS"));
    }

    [Test]
    public void NoBackendAtAllIsATypedErrorNamingEachReason()
    {
        var selector = new BackendSelector([Failing("one"), Unsupported("two")], environment: Env(null), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("one: failed to initialise").And.Contain("two: needs another OS"));
    }

    [Test]
    public void EnvironmentForcesABackendByName()
    {
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants, Env("SELECT"), ignoreEnvironment: false);
        var selection = selector.Select();
        using var backend = selection.Backend;
        Assert.That(selection.Forced, Is.True);
        Assert.That(backend.Capabilities.Kind, Is.EqualTo(BackendKind.Select));
    }

    [Test]
    public void UnknownForcedNameListsWhatIsAvailable()
    {
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants, Env("iocp"), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("IOMUX_BACKEND=iocp").And.Contain("epoll, poll, select"));
    }

    [Test]
    public void UnavailableForcedNameSaysWhyAndListsWhatIsAvailable()
    {
        var selector = new BackendSelector([Unsupported("kqueue"), BackendCatalog.Poll], environment: Env("kqueue"), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("cannot run here: needs another OS").And.Contain("Available here: poll"));
    }

    [Test]
    public void ForcedBackendThatFailsToInitialiseIsNotSilentlyReplaced()
    {
        var selector = new BackendSelector([Failing("broken"), BackendCatalog.Poll], environment: Env("broken"), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("failed to initialise").And.Contain("EMFILE"));
        Assert.That(e.InnerException, Is.InstanceOf<PosixException>());
    }

    [Test]
    public void EnvironmentIsIgnoredInSetuidProcesses()
    {
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants, Env("select"), ignoreEnvironment: true);
        Assert.That(selector.ForcedName, Is.Null);
        var selection = selector.Select();
        using var backend = selection.Backend;
        Assert.That(selection.Forced, Is.False);
        Assert.That(selection.Provider, Is.EqualTo(BackendCatalog.All[0]));
    }

    [Test]
    public void ThisTestProcessIsNotSetuid() => Assert.That(Interop.Platform.IsSetuid, Is.False);

    [Test]
    public void LinuxPrefersEpollAndTheChoiceCanBeQueried()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux order only");
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants, Env(null), ignoreEnvironment: false);
        var selection = selector.Select();
        using var poller = new Poller(selection.Backend);
        Assert.That(poller.Capabilities.Kind, Is.EqualTo(BackendKind.Epoll));
        Assert.That(poller.Capabilities.NativeEdge && poller.Capabilities.NativeOneshot && poller.Capabilities.NativeReadHangup, Is.True);
        Assert.That(poller.Capabilities.MaxDescriptor, Is.EqualTo(int.MaxValue));
    }

    [TestCase("epoll", BackendKind.Epoll)]
    [TestCase("poll", BackendKind.Poll)]
    [TestCase("select", BackendKind.Select)]
    public void FactoryCreatesByName(string name, BackendKind kind)
    {
        if (BackendCatalog.Find(name)?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        using var poller = PollerFactory.Create(name);
        Assert.That(poller.Capabilities.Kind, Is.EqualTo(kind));
        Assert.That(poller.Capabilities.Name, Is.EqualTo(name));
    }

    /// <summary>The public lookup that replaced the five catalogue fields (issue 25): each kind finds the catalogue's own
    /// provider of that kind (not a test variant), and a number that is no kind is refused rather than answered.</summary>
    [Test]
    public void FindByKindAnswersTheCataloguesProviderOfThatKind()
    {
        foreach (var kind in Enum.GetValues<BackendKind>())
        {
            var provider = BackendCatalog.Find(kind);
            Assert.That(provider.Kind, Is.EqualTo(kind), $"Find({kind})");
            Assert.That(provider, Is.SameAs(BackendCatalog.All.Single(p => p.Kind == kind)), $"Find({kind}) is All's one {kind} provider");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => BackendCatalog.Find((BackendKind)99));
    }

    [Test]
    public void FactoryRefusesAKindThisOsCannotRunAndSaysHowToGetIt()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("IOMUX_KQUEUE_LIBRARY") is not null)
            Assert.Ignore("Linux without libkqueue only");
        var e = Assert.Throws<BackendUnavailableException>(() => PollerFactory.Create(BackendKind.Kqueue))!;
        Assert.That(e.Message, Does.Contain("backend 'kqueue' cannot run here").And.Contain("IOMUX_KQUEUE_LIBRARY").And.Contain("Available here: epoll"));
    }

    [Test]
    public void KqueueIsNeverChosenAutomaticallyOnLinux()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux order only");
        var linux = BackendCatalog.All.Select(p => p.Name).ToList();
        Assert.That(linux.IndexOf("kqueue"), Is.GreaterThan(linux.IndexOf("select")), "libkqueue is opt-in: after every native fallback");
    }

    [Test]
    public void EventPortsAreRefusedOutsideIllumosWithTheReason()
    {
        if (Interop.Platform.IsIllumos)
            Assert.Ignore("this is illumos: ports are available");
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants, Env("ports"), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("IOMUX_BACKEND=ports cannot run here: event ports exist on illumos and Solaris only"));
    }
}

/// <summary>libkqueue on Linux: the backend is selectable by name only when IOMUX_KQUEUE_LIBRARY is set, and
/// setting nothing changes nothing. (No libkqueue package exists for this Debian, so the load itself is shown
/// failing with a typed error naming the library, which proves the kqueue path was taken.)</summary>
[NonParallelizable]
public sealed class LibKqueueSelectionTests
{
    [TearDown]
    public void Unset() => Environment.SetEnvironmentVariable("IOMUX_KQUEUE_LIBRARY", null);

    [Test]
    public void WithoutTheVariableKqueueCannotRunOnLinux()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux only");
        Environment.SetEnvironmentVariable("IOMUX_KQUEUE_LIBRARY", null);
        Assert.That(BackendCatalog.Kqueue.IsSupported, Is.False);
        using var poller = PollerFactory.Create();
        Assert.That(poller.Capabilities.Kind, Is.EqualTo(BackendKind.Epoll), "the default choice is untouched");
    }

    [Test]
    public void WithTheVariableForcingKqueueLoadsThatLibrary()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux only");
        Environment.SetEnvironmentVariable("IOMUX_KQUEUE_LIBRARY", "/nonexistent/libkqueue.so.0");
        Assert.That(BackendCatalog.Kqueue.IsSupported, Is.True);
        var selector = new BackendSelector(BackendCatalog.All, BackendCatalog.TestVariants,
            name => name == BackendSelector.EnvironmentVariable ? "kqueue" : Environment.GetEnvironmentVariable(name), ignoreEnvironment: false);
        var e = Assert.Throws<BackendUnavailableException>(() => selector.Select())!;
        Assert.That(e.Message, Does.Contain("IOMUX_BACKEND=kqueue failed to initialise").And.Contain("libkqueue.so.0"));
        using var poller = PollerFactory.Create();
        Assert.That(poller.Capabilities.Kind, Is.EqualTo(BackendKind.Epoll), "libkqueue is never chosen automatically");
    }
}
