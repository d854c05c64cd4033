using System.Reflection;
using System.Runtime.CompilerServices;

namespace IoMux.Tests;

/// <summary>Issue 25 item 3: no shipped library sees another shipped library's internals (a package mixed with another
/// version of its neighbour would fail at run time with MissingMethodException, which no API check sees). What is
/// granted goes to the test assemblies and to the tools, whose packages carry the exact DLLs they were built with
/// (docs/API-REVIEW.md, "InternalsVisibleTo between shipped assemblies").</summary>
public sealed class InternalsVisibleToTests
{
    /// <summary>Test, benchmark, fuzzing and model assemblies: never shipped, so any library may grant them.</summary>
    private static readonly string[] TestFriends =
        ["IoMux.Tests", "IoMux.SystemTests", "IoMux.AspNetCore.Tests", "IoMux.Hosting.Tests", "IoMux.Benchmarks", "IoMux.Fuzz", "IoMux.Models"];

    /// <summary>The libraries a user references as packages (those this test assembly references), each with the shipped
    /// assemblies it may grant its internals to: exactly docs/API-REVIEW.md's table, per library, so a grant that table
    /// removed (Web to the CLI) fails here even though the CLI may see another library's internals.</summary>
    private static readonly (Assembly Library, string[] ShippedFriends)[] Libraries =
    [
        (typeof(Poller).Assembly, ["IoMux.Conformance", "IoMux.Cli"]),   // IoMux: the poller, every backend, the selection
        (typeof(IoMux.Loop.EventLoop).Assembly, ["iomux-socket-proxyd"]), // IoMux.Loop
        (typeof(IoMux.Web.ListenerGroup).Assembly, []),                    // IoMux.Web
    ];

    [Test]
    public void TheLibrariesAreOnlyFriendsOfTestsAndTools()
    {
        foreach (var (library, shippedFriends) in Libraries)
        {
            var friends = library.GetCustomAttributes<InternalsVisibleToAttribute>().Select(a => a.AssemblyName).ToList();
            Assert.That(friends.Except(TestFriends).Except(shippedFriends), Is.Empty, $"{library.GetName().Name} grants its internals to");
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
