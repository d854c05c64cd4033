using System.Reflection;
using System.Runtime.CompilerServices;

namespace IoMux.Tests;

/// <summary>Issue 25 item 3: no shipped library sees another shipped library's internals (a package mixed with another
/// version of its neighbour would fail at run time with MissingMethodException, which no API check sees). What is
/// granted goes to the test assemblies and to the tools, whose packages carry the exact DLLs they were built with
/// (docs/API-REVIEW.md, "InternalsVisibleTo between shipped assemblies").</summary>
public sealed class InternalsVisibleToTests
{
    /// <summary>The libraries a user references as packages.</summary>
    private static readonly Assembly[] Libraries =
    [
        typeof(Poller).Assembly,                      // IoMux: the poller, every backend, the selection
        typeof(IoMux.Loop.EventLoop).Assembly,        // IoMux.Loop
        typeof(IoMux.Web.ListenerGroup).Assembly,     // IoMux.Web
    ];

    /// <summary>Where a library's internals may go: tests, benchmarks, fuzzing, models, and the tools.</summary>
    private static readonly string[] AllowedFriends =
    [
        "IoMux.Tests", "IoMux.SystemTests", "IoMux.AspNetCore.Tests", "IoMux.Hosting.Tests", "IoMux.Benchmarks",
        "IoMux.Fuzz", "IoMux.Models", "IoMux.Conformance", "IoMux.Cli", "iomux-socket-proxyd",
    ];

    [Test]
    public void TheLibrariesAreOnlyFriendsOfTestsAndTools()
    {
        foreach (var library in Libraries)
        {
            var friends = library.GetCustomAttributes<InternalsVisibleToAttribute>().Select(a => a.AssemblyName).ToList();
            Assert.That(friends.Except(AllowedFriends), Is.Empty, $"{library.GetName().Name} grants its internals to");
        }
    }

    [Test]
    public void ThePollerTheBackendsAndTheSelectionAreOneAssembly()
    {
        var ioMux = typeof(Poller).Assembly;
        Assert.That(ioMux.GetName().Name, Is.EqualTo("IoMux"));
        // Internal types looked up by name: the backends and the selector live beside the contract.
        foreach (var name in new[] { "IoMux.Backends.Epoll.EpollBackend", "IoMux.Backends.Poll.PollBackend", "IoMux.Backends.Kqueue.KqueueBackend",
                     "IoMux.Backends.EventPorts.EventPortsBackend", "IoMux.BackendSelector", "IoMux.PollerFactory" })
            Assert.That(ioMux.GetType(name), Is.Not.Null, name);
        Assert.That(AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name),
            Has.None.StartsWith("IoMux.Core").And.None.StartsWith("IoMux.Backends"));
    }
}
