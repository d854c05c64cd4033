using IoMux.Interop;
using IoMux.AspNetCore;
using IoMux.Hosting;
using IoMux.Loop;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace IoMux.Tests.AspNetCore;

/// <summary>On Windows every entry point refuses with one clear <see cref="PlatformNotSupportedException"/> (issue 25:
/// the assemblies carry no platform attribute, so a portable app compiles without CA1416 and fails here at run time
/// instead). Windows is simulated on the test's own thread (<see cref="PlatformSupport.WindowsForTests"/>, thread-static):
/// other tests running meanwhile are not affected.</summary>
public sealed class PlatformSupportTests
{
    private static readonly (string Name, Action Call)[] EntryPoints =
    [
        ("PollerFactory.Create()", () => PollerFactory.Create().Dispose()),
        ("PollerFactory.Create(name)", () => PollerFactory.Create("poll").Dispose()),
        ("BackendSelector.Select", () => BackendSelector.Default.Select().Backend.Dispose()),
        ("EventLoop", () =>
        {
            using var poller = new Poller(BackendCatalog.Poll.Create()); // a real one: only the loop refuses
            new EventLoop(poller, ownsPoller: false).Dispose();
        }),
        ("UseIoMux", () => WebApplication.CreateSlimBuilder().WebHost.UseIoMux()),
        ("AddEventLoop", () => new ServiceCollection().AddEventLoop(_ => { })),
    ];

    private static IEnumerable<TestCaseData> Cases() => EntryPoints.Select(e => new TestCaseData(e.Name).SetArgDisplayNames(e.Name));

    [TestCaseSource(nameof(Cases))]
    public void OnWindowsTheEntryPointThrowsPlatformNotSupported(string name)
    {
        var call = EntryPoints.Single(e => e.Name == name).Call;
        PlatformSupport.WindowsForTests = true;
        try
        {
            Assert.That(PollerFactory.IsSupported, Is.False);
            var e = Assert.Throws<PlatformNotSupportedException>(() => call())!;
            Assert.That(e.Message, Does.Contain("POSIX system").And.Contain("Windows"));
        }
        finally
        {
            PlatformSupport.WindowsForTests = null;
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void HereTheEntryPointWorks(string name)
    {
        Assert.That(PollerFactory.IsSupported, Is.True);
        Assert.DoesNotThrow(() => EntryPoints.Single(e => e.Name == name).Call());
    }
}
